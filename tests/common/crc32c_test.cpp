// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/crc32c.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvscope {
namespace {

std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TEST(Crc32c, MatchesCheckValue) { EXPECT_EQ(crc32c(bytes("123456789")), 0xE3069283u); }

TEST(Crc32c, EmptyIsZero) { EXPECT_EQ(crc32c({}), 0u); }

TEST(Crc32c, RfcVectors) {
  // RFC 3720 B.4: 32 bytes of zeros and of 0xFF.
  std::vector<std::uint8_t> zeros(32, 0), ones(32, 0xFF);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
}

TEST(Crc32c, SeedChainsBuffers) {
  const std::string a = "The quick brown fox ", b = "jumps over the lazy dog, twice over.";
  EXPECT_EQ(crc32c(bytes(b), crc32c(bytes(a))), crc32c(bytes(a + b)));
}

TEST(Crc32c, DetectsSingleBitFlip) {
  std::string s(1000, 'x');
  const auto before = crc32c(bytes(s));
  s[517] ^= 0x10;
  EXPECT_NE(crc32c(bytes(s)), before);
}

}  // namespace
}  // namespace kvscope
