// SPDX-License-Identifier: Apache-2.0
// cachegen's centroid reconstruction (layout version 5, docs/bitstream.md
// "cachegen", "Version 5"): the decoder moves each Q toward its likelier
// neighbouring bin by a fraction of the offset the channel's anchor table
// implies. Same payload bytes, a different decoded value.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/codec.h"
#include "kvscope/codec/pipeline_trace.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

const Codec& cachegen() {
  return find_codec("cachegen");
}

// Shipped tables, keys after RoPE, no sinks: every decoded value is exactly
// level * step, nothing rotated or stored aside.
ParamSet plain(const char* reconstruction) {
  return {{"profile", ""},        {"key_space", "post_rope"},
          {"sinks", "0"},         {"scale", "head"},
          {"key_bins", "16"},     {"key_layer_splits", ""},
          {"value_bins", "16"},   {"value_layer_splits", ""},
          {"chunk_tokens", "64"}, {"reconstruction", reconstruction}};
}

// Peaked values: per channel a Laplacian around a channel mean, and one
// outlier channel per head that sets each token's step (as in real caches),
// so most values fall in the few bins around the mean: the shape centroid
// reconstruction is for.
kv::KVCache laplacian_cache(unsigned seed) {
  kv::KVCache c({2, 2, 192, 16});
  c.info.rope_applied = false;
  std::mt19937 rng(seed);
  std::exponential_distribution<float> e(1.0f);
  const auto& sh = c.shape();
  for (int l = 0; l < sh.layers; ++l)
    for (kv::Kind k : {kv::Kind::Key, kv::Kind::Value}) {
      auto t = c.tensor(l, k);
      for (std::size_t i = 0; i < t.size(); ++i) {
        const float mean = 0.1f * float(i % 16) - 0.8f;
        const float x = i % 16 == 5 ? (rng() % 2 ? 24.0f : -24.0f) : mean + (rng() % 2 ? e(rng) : -e(rng));
        t[i] = std::round(x * 1024.0f) / 1024.0f;  // exact in fp16's range here
      }
    }
  return c;
}

// The spec's level, written here from docs/bitstream.md, not taken from the codec.
float spec_level(const std::vector<std::uint32_t>& cdf, int M, float alpha, int q) {
  auto p = [&](int k) -> std::uint32_t {
    const int s = k + M;
    return s < 0 || s + 1 >= int(cdf.size()) ? 0u : cdf[std::size_t(s) + 1] - cdf[std::size_t(s)];
  };
  const std::uint32_t den = 6 * (p(q - 1) + 2 * p(q) + p(q + 1));
  if (den == 0) return float(q);
  return float(q) + alpha * (float(std::int32_t(p(q + 1)) - std::int32_t(p(q - 1))) / float(den));
}

TEST(Reconstruction, DefaultStreamsAreVersion5AndCarryTheParameter) {
  const auto cache = synthetic_cache({2, 2, 40, 8}, 3);
  const auto info = inspect_stream(cachegen().encode(cache, {{"profile", ""}}).bytes);
  EXPECT_EQ(info.codec_version, 5);
  EXPECT_EQ(info.params.at("reconstruction"), "0.75");
  EXPECT_EQ(info.params.count("channel_weighting"), 0u) << "no calibration here: unweighted";
  const auto mid = inspect_stream(cachegen().encode(cache, {{"profile", ""}, {"reconstruction", "0"}}).bytes);
  EXPECT_EQ(mid.codec_version, 3);
  EXPECT_EQ(mid.params.count("reconstruction"), 0u);
  // Float deltas have no centroid levels: the parameter is dropped, not refused.
  const auto fl = inspect_stream(cachegen().encode(cache, {{"profile", ""}, {"delta_mode", "float"}}).bytes);
  EXPECT_EQ(fl.codec_version, 3);
  EXPECT_EQ(fl.params.count("reconstruction"), 0u);
}

// Every anchor element decodes to the spec's level times its step, computed
// here from the anchor model the trace shows; the trace says the same.
TEST(Reconstruction, AnchorsDecodeToTheSpecsLevelTimesTheStep) {
  const auto cache = laplacian_cache(1);
  const ParamSet p = plain("0.75");
  const auto dec = decode(cachegen().encode(cache, p).bytes);
  int anchors = 0, moved = 0;
  for (int token : {0, 10, 70}) {
    const auto tr = trace_pipeline(cache, p, 1, kv::Kind::Value, token, 0, 16);
    EXPECT_FLOAT_EQ(tr.reconstruction, 0.75f);
    for (const auto& e : tr.elements) {
      const float got = dec.channel_value(1, kv::Kind::Value, token, e.channel);
      EXPECT_EQ(e.reconstructed, got) << "token " << token << " channel " << e.channel;
      if (!e.is_anchor) continue;  // raw channels code every token as an anchor
      ++anchors;
      const float level = spec_level(e.cdf, tr.M, 0.75f, e.q);
      EXPECT_EQ(e.level, level);
      EXPECT_EQ(got, level * e.step) << "token " << token << " channel " << e.channel;
      moved += level != float(e.q);
    }
  }
  EXPECT_GT(anchors, 0);
  EXPECT_GT(moved, 0) << "some levels must leave the bin's middle";
}

// The same payload bytes decode closer to a peaked cache than midpoints do
// (the bound on each value's error, half a step plus reconstruction / 6 of
// one, is fuzz_roundtrip's).
TEST(Reconstruction, SamePayloadDecodesCloserThanMidpoints) {
  const auto cache = laplacian_cache(2);
  const auto mid = cachegen().encode(cache, plain("0"));
  const auto cen = cachegen().encode(cache, plain("0.75"));
  const auto mi = inspect_stream(mid.bytes), ci = inspect_stream(cen.bytes);
  ASSERT_EQ(mi.sections.size(), ci.sections.size());
  for (std::size_t i = 0; i < mi.sections.size(); ++i)
    ASSERT_TRUE(std::equal(
        mid.bytes.begin() + std::ptrdiff_t(mi.sections[i].payload_offset),
        mid.bytes.begin() + std::ptrdiff_t(mi.sections[i].payload_offset + mi.sections[i].payload_bytes),
        cen.bytes.begin() + std::ptrdiff_t(ci.sections[i].payload_offset),
        cen.bytes.begin() + std::ptrdiff_t(ci.sections[i].payload_offset + ci.sections[i].payload_bytes)))
        << "section " << i;
  const auto dm = decode(mid.bytes), dc = decode(cen.bytes);
  double em = 0, ec = 0;
  for (std::size_t i = 0; i < cache.data().size(); ++i) {
    em += std::pow(double(dm.data()[i]) - cache.data()[i], 2);
    ec += std::pow(double(dc.data()[i]) - cache.data()[i], 2);
  }
  EXPECT_LT(ec, 0.97 * em) << "centroid " << ec << " vs midpoint " << em;
}

// Byte offset of the layout version in the header body (after the codec name).
std::size_t version_offset(const std::vector<std::uint8_t>& b) {
  const char name[] = "cachegen";
  const auto it = std::search(b.begin() + 16, b.end(), name, name + 8);
  return std::size_t(it - b.begin()) + 8;
}

TEST(Reconstruction, LayoutVersionRulesAreChecked) {
  const auto cache = synthetic_cache({2, 2, 40, 8}, 5);
  auto expect_refused = [](std::vector<std::uint8_t> b, const char* what) {
    test::reseal(b);
    try {
      decode(b);
      ADD_FAILURE() << "decoded; expected: " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  const auto v5 = cachegen().encode(cache, {{"profile", ""}}).bytes;
  ASSERT_EQ(inspect_stream(v5).codec_version, 5);
  auto as3 = v5;
  as3[version_offset(as3)] = 3;
  expect_refused(as3, "with parameter 'reconstruction'");
  const auto v3 = cachegen().encode(cache, {{"profile", ""}, {"reconstruction", "0"}}).bytes;
  auto as5 = v3;
  as5[version_offset(as5)] = 5;
  expect_refused(as5, "without parameter 'reconstruction'");
  auto zero = v5;
  const char from[] = "0.75", to[] = "0.00";
  const auto at = std::search(zero.begin(), zero.end(), from, from + 4);
  ASSERT_NE(at, zero.end());
  std::copy(to, to + 4, at);
  expect_refused(zero, "with reconstruction 0 and delta_mode integer");
}

// stream_params() says what an older stream's missing parameters meant:
// midpoints and no weighting, not today's defaults.
TEST(Reconstruction, StreamParamsOfOlderStreamsSayMidpoints) {
  const auto cache = synthetic_cache({2, 2, 40, 8}, 6);
  const auto v3 = stream_params(
      inspect_stream(cachegen().encode(cache, {{"profile", ""}, {"reconstruction", "0"}}).bytes));
  EXPECT_EQ(v3.at("reconstruction"), "0");
  EXPECT_EQ(v3.at("channel_weighting"), "off");
  const auto v5 = stream_params(inspect_stream(cachegen().encode(cache, {{"profile", ""}}).bytes));
  EXPECT_EQ(v5.at("reconstruction"), "0.75");
  const auto v2 = stream_params(inspect_stream(cachegen()
                                                   .encode(cache, {{"profile", ""},
                                                                   {"reconstruction", "0"},
                                                                   {"sinks", "0"},
                                                                   {"step_coding", "fp16"},
                                                                   {"table_bits", "16"},
                                                                   {"key_space", "post_rope"}})
                                                   .bytes));
  EXPECT_EQ(v2.at("sinks"), "0");
  EXPECT_EQ(v2.at("reconstruction"), "0");
  const auto int8 = stream_params(inspect_stream(find_codec("int8").encode(cache, {}).bytes));
  EXPECT_EQ(int8.at("chunk_tokens"), find_codec("int8").params(&cache.shape()).front().default_value);
}

}  // namespace
}  // namespace kvscope::codec
