// SPDX-License-Identifier: Apache-2.0
// The `transform` codec's value token gains (`value_gain`, layout version 3):
// value tokens near the mean decode closer relative to their distance from it
// at the same budget, the stream says which version it is (streams without gains
// keep versions 1 and 2, their headers unchanged), and a tampered gain is a
// Format error.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kvscope/codec/bitstream.h"
#include "tamper_test_util.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

constexpr kv::CacheShape kShape{2, 2, 160, 8};

// Every fifth token's values lie 30x closer to the mean value than the
// others' (gains follow a token's distance to the basis mean, not its size).
bool small(int t) {
  return t % 5 == 0;
}

using ChannelMeans = std::vector<double>;  // [layer][head][dim] of the values

ChannelMeans value_means(const kv::KVCache& c) {
  ChannelMeans m(std::size_t(kShape.layers) * kShape.kv_heads * kShape.head_dim, 0.0);
  for (int l = 0; l < kShape.layers; ++l)
    for (int h = 0; h < kShape.kv_heads; ++h)
      for (int d = 0; d < kShape.head_dim; ++d) {
        double& v = m[(std::size_t(l) * kShape.kv_heads + h) * kShape.head_dim + d];
        for (int t = 0; t < kShape.tokens; ++t) v += c.at(l, kv::Kind::Value, h, t, d);
        v /= kShape.tokens;
      }
  return m;
}

double mean_of(const ChannelMeans& m, int l, int h, int d) {
  return m[(std::size_t(l) * kShape.kv_heads + h) * kShape.head_dim + d];
}

kv::KVCache cache_with_small_value_tokens(std::uint64_t seed) {
  auto c = synthetic_cache(kShape, seed);
  c.info.rope_applied = false;
  const auto m = value_means(c);
  for (int l = 0; l < kShape.layers; ++l)
    for (int h = 0; h < kShape.kv_heads; ++h)
      for (int t = 0; t < kShape.tokens; ++t)
        if (small(t))
          for (int d = 0; d < kShape.head_dim; ++d) {
            float& v = c.at(l, kv::Kind::Value, h, t, d);
            v = float(mean_of(m, l, h, d) + (v - mean_of(m, l, h, d)) / 30.0);
          }
  return c;
}

// Mean over the small value tokens of |error|^2 / |value - mean|^2.
double small_token_relative_error(const kv::KVCache& a, const kv::KVCache& b) {
  const auto m = value_means(a);
  double sum = 0;
  int count = 0;
  for (int l = 0; l < kShape.layers; ++l)
    for (int t = 0; t < kShape.tokens; ++t) {
      if (!small(t)) continue;
      double e = 0, x = 0;
      for (int h = 0; h < kShape.kv_heads; ++h)
        for (int d = 0; d < kShape.head_dim; ++d) {
          const double v = a.at(l, kv::Kind::Value, h, t, d);
          e += std::pow(v - b.at(l, kv::Kind::Value, h, t, d), 2);
          x += std::pow(v - mean_of(m, l, h, d), 2);
        }
      sum += e / x;
      ++count;
    }
  return sum / count;
}

ParamSet gain_params(const std::string& gain) {
  return {{"basis", "cache"}, {"bits", "3"}, {"chunk_tokens", "64"}, {"value_gain", gain}};
}

TEST(TransformGain, TokensNearTheMeanDecodeCloserAtTheSameBudget) {
  const auto cache = cache_with_small_value_tokens(51);
  const auto& codec = find_codec("transform");
  const auto plain = codec.encode(cache, gain_params("0")), gained = codec.encode(cache, gain_params("1"));
  EXPECT_EQ(inspect_stream(plain.bytes).codec_version, 1);
  EXPECT_EQ(inspect_stream(gained.bytes).codec_version, 3);
  // Both meet the budget: the gains are counted in it.
  EXPECT_LE(8.0 * double(gained.bytes.size()) / double(kShape.elements()), 3.0 * 1.01);
  EXPECT_LE(8.0 * double(plain.bytes.size()) / double(kShape.elements()), 3.0 * 1.01);
  const double e_plain = small_token_relative_error(cache, decode(plain.bytes));
  const double e_gained = small_token_relative_error(cache, decode(gained.bytes));
  EXPECT_LT(e_gained, 0.5 * e_plain) << "plain " << e_plain << ", gained " << e_gained;
}

TEST(TransformGain, StreamsSayWhetherTheyCarryGains) {
  const auto cache = cache_with_small_value_tokens(52);
  const auto& codec = find_codec("transform");
  const auto gained = inspect_stream(codec.encode(cache, {{"basis", "cache"}}).bytes);
  EXPECT_EQ(gained.codec_version, 3) << "value gains are on by default";
  EXPECT_EQ(stream_params(gained).at("value_gain"), "1");
  const auto plain = inspect_stream(codec.encode(cache, gain_params("0")).bytes);
  EXPECT_EQ(plain.codec_version, 1);
  EXPECT_EQ(plain.params.count("value_gain"), 0u) << "version 1 headers keep their parameters";
  EXPECT_EQ(stream_params(plain).at("value_gain"), "0");
}

TEST(TransformGain, TamperedGainIsAFormatError) {
  const auto cache = cache_with_small_value_tokens(53);
  auto params = gain_params("1");
  params["sink_tokens"] = "0";
  params["chunk_tokens"] = "160";
  const auto bytes = find_codec("transform").encode(cache, params).bytes;
  ASSERT_NO_THROW(decode(bytes));
  // Layer 0's value chunk (basis shipped: a Table section before each
  // chunk): varint m, f32 step, m x (varint gap, varint zc, u8 K, u16 rho,
  // u16 step scale), then the first token's f16 gain.
  const auto info = inspect_stream(bytes);
  const SectionInfo* sec = nullptr;
  for (const auto& s : info.sections)
    if (s.kind == SectionKind::Chunk && s.kv == kv::Kind::Value && s.layer == 0) sec = &s;
  ASSERT_NE(sec, nullptr);
  test::ByteCursor at{bytes, sec->payload_offset};
  const std::uint64_t m = at.varint();
  ASSERT_GT(m, 0u);
  at.skip(4);
  for (std::uint64_t j = 0; j < m; ++j) {
    at.varint();
    at.varint();
    at.skip(5);
  }
  test::expect_invalid_f16_refused(bytes, at.at, "token gain");
}

}  // namespace
}  // namespace kvscope::codec
