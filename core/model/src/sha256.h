// SPDX-License-Identifier: Apache-2.0
#pragma once

// SHA-256 (FIPS 180-4) for fingerprinting model files; private to core/model.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kvscope::model::detail {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  /// Finishes and returns the lowercase hex digest; the object is spent.
  std::string hex_digest();

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buf_{};
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;
};

}  // namespace kvscope::model::detail
