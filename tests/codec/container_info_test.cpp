// SPDX-License-Identifier: Apache-2.0
// The container's extended cache info (docs/bitstream.md 1.1): per-layer RoPE
// frequencies and sliding windows travel with every codec's stream, streams
// without them keep their old bytes, and a tampered block is a Format error.
#include <gtest/gtest.h>

#include <algorithm>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

kv::KVCache cache_with_info() {
  kv::KVCache c(test::small_shape());
  for (std::size_t i = 0; i < c.data().size(); ++i) c.data()[i] = float(int(i % 17) - 8) * 0.25f;
  const int half = c.shape().head_dim / 2;
  c.info.rope_inv_freq.assign(std::size_t(c.shape().layers), std::vector<double>(std::size_t(half)));
  for (int l = 0; l < c.shape().layers; ++l)
    for (int i = 0; i < half; ++i) c.info.rope_inv_freq[l][i] = (l == 1 ? 0.5 : 1.0) / double(1 << i);
  c.info.layer_window = {0, 16, 0};
  return c;
}

TEST(ContainerInfo, RopeTablesAndWindowsSurviveEveryCodec) {
  const auto c = cache_with_info();
  for (const auto* codec : all_codecs()) {
    const auto r = codec->encode(c, {});
    const auto info = inspect_stream(r.bytes);
    EXPECT_EQ(info.info.rope_inv_freq, c.info.rope_inv_freq) << codec->name();
    EXPECT_EQ(info.info.layer_window, c.info.layer_window) << codec->name();
    const auto d = decode(r.bytes);
    EXPECT_EQ(d.info.rope_inv_freq, c.info.rope_inv_freq) << codec->name();
    EXPECT_EQ(d.info.layer_window, c.info.layer_window) << codec->name();
  }
}

// Regression (issue #19 review of the extended info): the codec header was
// once located by a fixed offset from the header body's end, which broke when
// the extended info moved; windows ending in zero bytes hid it for cachegen,
// whose codec header starts with zero bytes. inspect_stream() records where it
// read the codec header: after the extended info, 4 bytes before the body's
// end (docs/bitstream.md 1.1).
TEST(ContainerInfo, CodecHeaderIsFoundAfterTheExtendedInfo) {
  kv::KVCache c = cache_with_info();
  c.info.layer_window = {0, 0xABCDEF, 5};  // the 2 bytes before the body's last 4: AB 00
  // Keys coded after RoPE: the tables then change nothing in the values.
  for (const codec::CodecConfig& config :
       {codec::CodecConfig{"cachegen", {{"key_space", "post_rope"}}}, codec::CodecConfig{"kivi2", {}}}) {
    const std::string name = config.codec;
    const auto r = encode(c, config);
    const auto info = inspect_stream(r.bytes);
    ASSERT_EQ(r.bytes[6], kFlagExtendedInfo);
    EXPECT_EQ(info.codec_header_offset + info.codec_header_bytes, info.header_bytes - 4) << name;
    EXPECT_EQ(decode(r.bytes).info.layer_window, c.info.layer_window) << name;
    const auto plain = [&] {
      kv::KVCache p = c;
      p.info.rope_inv_freq.clear();
      p.info.layer_window.clear();
      return encode(p, config).bytes;
    }();
    const auto a = decode(r.bytes), b = decode(plain);
    EXPECT_TRUE(std::equal(a.data().begin(), a.data().end(), b.data().begin(), b.data().end())) << name;
  }
}

TEST(ContainerInfo, StreamsWithoutExtendedInfoLeaveTheFlagClear) {
  kv::KVCache c = cache_with_info();
  const auto with = encode(c, {"fp16", {}}).bytes;
  c.info.rope_inv_freq.clear();
  c.info.layer_window.clear();
  const auto without = encode(c, {"fp16", {}}).bytes;
  EXPECT_EQ(with[6], kFlagExtendedInfo);
  EXPECT_EQ(without[6], 0);
  // Two distinct tables (layers 0 and 2 share one) + indices + windows.
  EXPECT_EQ(with.size() - without.size(), 2u + 2 * 4 * 8 + 3 * 2 + 1 + 3 * 4);
}

TEST(ContainerInfo, TamperedExtendedInfoIsAFormatError) {
  const auto good = encode(cache_with_info(), {"fp16", {}}).bytes;
  const auto info = inspect_stream(good);
  // The block ends just before the codec header's length (u32), the codec
  // header and section_count (u32); its layer-window flag is 13 bytes before
  // the block's end (flag + 3 windows), its last table index 2 bytes before that.
  const std::size_t end = info.header_bytes - 8 - info.codec_header_bytes;
  struct Case {
    std::size_t offset;
    std::uint8_t value;
    const char* what;
  } cases[] = {
      {end - 13, 2, "layer-window flag"}, {end - 15, 9, "table index"}, {end - 4 + 3, 0x80, "window"}};
  for (const auto& k : cases) {
    auto bad = good;
    bad[k.offset] = k.value;
    test::reseal(bad);
    try {
      decode(bad);
      ADD_FAILURE() << k.what << ": tampered stream decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format) << k.what << ": " << e.what();
    }
  }
  auto flagged = encode(
                     [] {
                       auto c = cache_with_info();
                       c.info.rope_inv_freq.clear();
                       c.info.layer_window.clear();
                       return c;
                     }(),
                     {"fp16", {}})
                     .bytes;
  flagged[6] = 2;  // an unknown flag bit
  test::reseal(flagged);
  try {
    decode(flagged);
    ADD_FAILURE() << "unknown flag accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
  }
}

TEST(ContainerInfo, EncoderRefusesTablesThatDoNotFitTheShape) {
  auto c = cache_with_info();
  c.info.rope_inv_freq.pop_back();
  EXPECT_THROW(encode(c, {"int8", {}}), Error);
  c = cache_with_info();
  c.info.layer_window = {0, -1, 0};
  EXPECT_THROW(encode(c, {"int8", {}}), Error);
}

}  // namespace
}  // namespace kvscope::codec
