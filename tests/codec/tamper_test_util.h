// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec::test {

/// Walks a stream's bytes from `at` to find the offset of a field to tamper
/// with: varints (docs/bitstream.md section 1) and fixed-size fields.
struct ByteCursor {
  const std::vector<std::uint8_t>& bytes;
  std::size_t at;
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const std::uint8_t b = bytes.at(at++);
      v |= std::uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
  }
  void skip(std::size_t n) { at += n; }
};

/// Writes each invalid f16 in turn (NaN, +inf, 0, -1) at byte `at` of a valid
/// stream, reseals the checksums so the codec's own checks see it, and expects
/// decoding to fail with a Format error whose message contains `what`.
inline void expect_invalid_f16_refused(const std::vector<std::uint8_t>& valid, std::size_t at,
                                       const std::string& what, const DecodeOptions& options = {}) {
  for (const std::uint16_t bad : {0x7E00, 0x7C00, 0x0000, 0xBC00}) {
    auto tampered = valid;
    tampered.at(at) = std::uint8_t(bad & 0xFF);
    tampered.at(at + 1) = std::uint8_t(bad >> 8);
    reseal(tampered);
    try {
      decode(tampered, options);
      ADD_FAILURE() << "decoded a " << what << " of f16 0x" << std::hex << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
}

}  // namespace kvscope::codec::test
