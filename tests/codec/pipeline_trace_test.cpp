// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/pipeline_trace.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kvscope/common/error.h"
#include "kvscope/kv/rope.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

// The trace must describe what the codec really does: its reconstructed
// values are exactly what decode() returns for every traced element, in
// anchor and delta positions, across chunks, for each delta mode.
TEST(PipelineTrace, ReconstructionMatchesTheRealDecoder) {
  const auto cache = synthetic_cache({3, 2, 90, 8}, 5);
  for (const char* mode : {"auto", "always", "never", "sinks"}) {
    // Keys as cached (the decoder's output space); "sinks": two exact tokens, then auto.
    const bool sinks = std::string(mode) == "sinks";
    const ParamSet params{{"delta", sinks ? "auto" : mode},
                          {"chunk_tokens", "40"},
                          {"group_size", "7"},
                          {"key_space", "post_rope"},
                          {"sinks", sinks ? "2" : "0"}};
    const auto decoded = decode(find_codec("cachegen").encode(cache, params).bytes);
    for (int layer : {0, 2})
      for (kv::Kind kind : kv::kKinds)
        for (int token : {0, 3, 7, 41, 89}) {
          const auto tr = trace_pipeline(cache, params, layer, kind, token, 2, 12);
          ASSERT_EQ(tr.elements.size(), 12u);
          EXPECT_EQ(tr.chunk_begin, token / 40 * 40);
          EXPECT_EQ(tr.sink, sinks && token < 2);
          for (const auto& e : tr.elements) {
            EXPECT_EQ(e.reconstructed, decoded.channel_value(layer, kind, token, e.channel))
                << mode << " layer " << layer << " token " << token << " channel " << e.channel;
            EXPECT_FLOAT_EQ(e.original, cache.channel_value(layer, kind, token, e.channel));
            EXPECT_FLOAT_EQ(e.error, e.reconstructed - e.original);
            EXPECT_EQ(e.sink, tr.sink);
            if (e.sink) continue;  // stored as f16: no step
            // Half a step, plus reconstruction / 6 of one with centroid levels.
            EXPECT_LE(std::fabs(e.error), (0.5f + tr.reconstruction / 6.0f) * e.step * 1.0001f + 1e-7f);
            EXPECT_LE(std::abs(e.q), tr.M);
          }
        }
  }
}

// key_space=pre_rope: keys are traced in the space they are coded in (RoPE
// removed), which is what coding the RoPE-free cache as it is decodes to.
TEST(PipelineTrace, PreRopeKeysAreTracedBeforeRope) {
  const auto cache = synthetic_cache({2, 2, 30, 8}, 4);
  const ParamSet params{{"key_space", "pre_rope"}, {"sinks", "1"}, {"chunk_tokens", "16"}};
  kv::KVCache stripped = cache;
  kv::remove_rope(stripped);
  ParamSet as_is = params;
  as_is["key_space"] = "post_rope";
  const auto decoded = decode(find_codec("cachegen").encode(stripped, as_is).bytes);
  for (int token : {3, 20}) {
    const auto tr = trace_pipeline(cache, params, 1, kv::Kind::Key, token, 0, 8);
    EXPECT_TRUE(tr.pre_rope);
    for (const auto& e : tr.elements) {
      EXPECT_EQ(e.original, stripped.channel_value(1, kv::Kind::Key, token, e.channel));
      EXPECT_EQ(e.reconstructed, decoded.channel_value(1, kv::Kind::Key, token, e.channel));
    }
  }
  EXPECT_FALSE(trace_pipeline(cache, params, 1, kv::Kind::Value, 3, 0, 8).pre_rope);
}

TEST(PipelineTrace, AnchorsDeltasSymbolsAndCost) {
  const auto cache = synthetic_cache({2, 1, 30, 4}, 3);
  const ParamSet params{{"delta", "always"},
                        {"group_size", "10"},
                        {"key_bins", "32"},
                        {"key_layer_splits", ""},
                        {"sinks", "0"}};
  const auto anchor = trace_pipeline(cache, params, 0, kv::Kind::Key, 20, 0, 4);
  const auto inner = trace_pipeline(cache, params, 0, kv::Kind::Key, 24, 0, 4);
  EXPECT_EQ(anchor.bins, 32);
  EXPECT_EQ(anchor.M, 15);
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& a = anchor.elements[i];
    const auto& d = inner.elements[i];
    EXPECT_TRUE(a.is_anchor);
    EXPECT_EQ(a.anchor_token, 20);
    EXPECT_EQ(a.symbol, a.q + 15);
    EXPECT_EQ(a.cdf.size(), 32u) << "anchor alphabet 2M+1 plus the leading 0";
    EXPECT_FALSE(d.is_anchor);
    EXPECT_EQ(d.anchor_token, 20);
    EXPECT_EQ(d.anchor_q, a.q);
    EXPECT_EQ(d.anchor_step, a.step);
    // The anchor's Q re-expressed in this token's step (per-token scale).
    const float pred = std::nearbyint(std::clamp(float(a.q) * (a.step / d.step), -15.0f, 15.0f));
    EXPECT_EQ(d.prediction, int(pred));
    EXPECT_EQ(d.delta, d.q - d.prediction);
    EXPECT_EQ(d.symbol, d.delta + 30);
    EXPECT_EQ(d.cdf.size(), 62u) << "delta alphabet 4M+1 plus the leading 0";
    for (const auto* e : {&a, &d}) {
      ASSERT_GT(e->freq, 0u) << "a coded symbol always has a frequency";
      EXPECT_EQ(e->freq, e->cdf[e->symbol + 1] - e->cdf[e->symbol]);
      EXPECT_NEAR(e->bits, -std::log2(e->freq / 65536.0), 1e-12);
      EXPECT_EQ(e->cdf.back(), 65536u);
    }
  }
}

TEST(PipelineTrace, ChannelScaleDeltasAreToTheAnchorQ) {
  const auto cache = synthetic_cache({2, 1, 30, 4}, 3);
  const ParamSet params{{"delta", "always"},
                        {"group_size", "10"},
                        {"key_bins", "32"},
                        {"key_layer_splits", ""},
                        {"scale", "channel"}};
  const auto tr = trace_pipeline(cache, params, 0, kv::Kind::Key, 24, 0, 4);
  EXPECT_EQ(tr.scale, "channel");
  for (const auto& d : tr.elements) {
    EXPECT_EQ(d.step, d.anchor_step) << "one step per channel and chunk";
    EXPECT_EQ(d.prediction, d.anchor_q);
    EXPECT_EQ(d.delta, d.q - d.anchor_q);
  }
}

TEST(PipelineTrace, OutOfRangeRequestsAreInvalidArgument) {
  const auto cache = synthetic_cache({2, 1, 30, 4}, 3);
  EXPECT_THROW(trace_pipeline(cache, {}, 2, kv::Kind::Key, 0, 0, 1), Error);
  EXPECT_THROW(trace_pipeline(cache, {}, 0, kv::Kind::Key, 30, 0, 1), Error);
  EXPECT_THROW(trace_pipeline(cache, {}, 0, kv::Kind::Key, 0, 3, 2), Error);
  EXPECT_THROW(trace_pipeline(cache, {}, 0, kv::Kind::Key, 0, 0, 0), Error);
  EXPECT_THROW(trace_pipeline(cache, {{"group_size", "0"}}, 0, kv::Kind::Key, 0, 0, 1), Error);
}

}  // namespace
}  // namespace kvscope::codec
