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
