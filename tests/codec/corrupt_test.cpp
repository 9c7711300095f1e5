// SPDX-License-Identifier: Apache-2.0
// Corrupt, truncated and tampered streams must give kvscope::Error, never a
// crash (run under the asan preset to catch out-of-bounds reads too).
#include <gtest/gtest.h>

#include "kvscope/codec/bitstream.h"
#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

class CorruptStream : public ::testing::TestWithParam<std::string> {};

std::vector<std::uint8_t> valid_stream(const std::string& codec) {
  return find_codec(codec).encode(synthetic_cache({2, 1, 23, 4}, 9), {{"chunk_tokens", "8"}}).bytes;
}

TEST_P(CorruptStream, EveryTruncationIsAnError) {
  const auto valid = valid_stream(GetParam());
  for (std::size_t n = 0; n < valid.size(); ++n) {
    std::vector<std::uint8_t> cut(valid.begin(), valid.begin() + n);
    EXPECT_THROW(decode(cut), Error) << "cut at " << n;
  }
}

TEST_P(CorruptStream, BitFlipsAreDetected) {
  const auto valid = valid_stream(GetParam());
  for (std::size_t i = 0; i < valid.size(); i += 1 + valid.size() / 300) {
    auto m = valid;
    m[i] ^= 0x10;
    try {
      decode(m);
      ADD_FAILURE() << "flip at " << i << " went unnoticed";
    } catch (const Error& e) {
      EXPECT_TRUE(e.code() == ErrorCode::Format || e.code() == ErrorCode::Checksum ||
                  e.code() == ErrorCode::Unsupported)
          << e.what();
    }
  }
}

TEST_P(CorruptStream, TamperedAndResealedStreamsNeverCrash) {
  const auto valid = valid_stream(GetParam());
  DecodeOptions o;
  o.max_elements = 1 << 20;
  o.threads = 1;
  for (const auto& m : test::mutations(valid, 300, 42)) {
    try {
      auto d = decode(m, o);
      EXPECT_EQ(d.data().size(), d.shape().elements());
    } catch (const Error&) {
    }
  }
}

TEST_P(CorruptStream, WrongSectionLengthIsAnError) {
  auto m = valid_stream(GetParam());
  const auto info = inspect_stream(m);
  const auto& s = info.sections.back();
  m[s.offset + 16] += 1;  // payload length one larger than what follows
  test::reseal(m);
  EXPECT_THROW(decode(m), Error);
  m = valid_stream(GetParam());
  m[info.sections[0].offset + 16] -= 1;  // one shorter: the rest misaligns
  test::reseal(m);
  EXPECT_THROW(decode(m), Error);
}

INSTANTIATE_TEST_SUITE_P(Codecs, CorruptStream, ::testing::ValuesIn([] {
                           std::vector<std::string> names;
                           for (const Codec* c : all_codecs()) names.push_back(c->name());
                           return names;
                         }()));

TEST(CorruptStream, GarbageIsNotAStream) {
  std::vector<std::uint8_t> junk(100, 0xAB);
  EXPECT_THROW(decode(junk), Error);
  EXPECT_THROW(inspect_stream(junk), Error);
  EXPECT_THROW(decode(std::span<const std::uint8_t>{}), Error);
}

}  // namespace
}  // namespace kvscope::codec
