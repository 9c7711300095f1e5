// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/stage_analysis.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

TEST(StageAnalysis, BitsShrinkThroughTheStages) {
  const auto cache = synthetic_cache({4, 2, 300, 16}, 8);
  // The layout version 2 defaults (group bins, keys after RoPE, no sinks).
  const auto a = analyze_stages(cache, {{"key_bins", "16,24,24"},
                                        {"key_layer_splits", "1,2"},
                                        {"value_bins", "16,10"},
                                        {"value_layer_splits", "1"},
                                        {"key_space", "post_rope"},
                                        {"sinks", "0"}});
  EXPECT_EQ(a.fp16.overall, 16.0);
  EXPECT_GT(a.quantized_fixed.overall, a.raw_entropy.overall);
  EXPECT_GT(a.raw_entropy.overall, a.delta_entropy.overall) << "token locality makes deltas cheaper";
  EXPECT_GE(a.coded.overall, a.coded_payload);
  EXPECT_NEAR(a.coded_payload, a.delta_entropy.overall, 0.15 * a.delta_entropy.overall);
  ASSERT_EQ(a.coded.per_layer.size(), 8u);
  // Default bins: layer 0 keys use 16 bins, the last layer 24.
  EXPECT_DOUBLE_EQ(a.quantized_fixed.per_layer[0], 4.0);
  EXPECT_DOUBLE_EQ(a.quantized_fixed.per_layer[6], std::log2(24.0));
  std::size_t sum = 0;
  for (auto b : a.encoded.size.layer_bytes) sum += b;
  EXPECT_GT(sum, a.encoded.size.payload_bytes);
}

TEST(StageAnalysis, BadParameterIsInvalidArgument) {
  const auto cache = synthetic_cache({4, 1, 20, 4}, 8);
  EXPECT_THROW(analyze_stages(cache, {{"group_size", "0"}}), Error);
}

}  // namespace
}  // namespace kvscope::codec
