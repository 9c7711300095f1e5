// SPDX-License-Identifier: GPL-3.0-or-later
// The first view of a retune (retune_estimate.h): which layers a change
// touches, and that re-encoding only those layers and patching them into the
// last exact encode gives the exact encode's per-stream bytes and stages.
#include "retune_estimate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kvscope/codec/codec.h"

#if KVSCOPE_GUI_HAVE_CODECS
namespace kvscope::gui {
namespace {

kv::KVCache smoothCache(int layers, int tokens) {
  kv::KVCache cache(kv::CacheShape{layers, 2, tokens, 16});
  const auto& s = cache.shape();
  for (int l = 0; l < s.layers; ++l)
    for (kv::Kind k : kv::kKinds)
      for (int h = 0; h < s.kv_heads; ++h)
        for (int t = 0; t < s.tokens; ++t)
          for (int d = 0; d < s.head_dim; ++d)
            cache.at(l, k, h, t, d) = float(std::sin(0.07 * t + d + 0.5 * l + h) * (d == 3 ? 12.0 : 1.0) +
                                            0.01 * ((t * 7 + d) % 5));
  cache.info.model_name = "synthetic";
  return cache;
}

codec::CodecConfig cachegen(const std::string& key_bins, const std::string& value_bins) {
  return {"cachegen", {{"key_bins", key_bins}, {"value_bins", value_bins}, {"profile", ""}}};
}

TEST(RetuneEstimate, TouchedLayersOnlyForPerLayerBinChanges) {
  const auto a = cachegen("16,16,24,24", "10,10,10,10");
  auto b = cachegen("16,32,24,24", "10,10,10,12");
  const auto touched = layersTouched(a, b, 4);
  ASSERT_TRUE(touched.has_value());
  EXPECT_EQ(*touched, (std::vector<int>{1, 3}));
  EXPECT_EQ(layersTouched(a, a, 4), std::vector<int>{});
  // Another parameter may change every stream.
  b = a;
  b.params["group_size"] = "5";
  EXPECT_FALSE(layersTouched(a, b, 4).has_value());
  // Layer groups: an entry covers several layers.
  auto grouped = cachegen("16,24", "10,10,10,10");
  grouped.params["key_layer_splits"] = "2";
  auto grouped2 = grouped;
  grouped2.params["key_bins"] = "16,32";
  EXPECT_FALSE(layersTouched(grouped, grouped2, 4).has_value());
  // Another codec.
  EXPECT_FALSE(layersTouched({"int8", {}}, {"int8", {}}, 4).has_value());
}

// Regression: after "Calibrate from this context" set cachegen's profile to
// the new file, the sampled-layers estimate encoded 6 of the 30 layers with
// it, whose tables fit only all 30: "Encode failed", and no exact encode.
TEST(RetuneEstimate, RegressionLayerPartsWithACalibrationFileFailedToEncode) {
  auto c = cachegen("16,16,24,24", "10,10,10,10");
  EXPECT_TRUE(encodesLayerSubsets(c));
  c.params["profile"] = "auto";
  EXPECT_TRUE(encodesLayerSubsets(c));
  c.params["profile"] = "";
  EXPECT_TRUE(encodesLayerSubsets(c));
  c.params["profile"] = "/some/calibration/0123456789abcdef.kvsprof";
  EXPECT_FALSE(encodesLayerSubsets(c));
  EXPECT_TRUE(encodesLayerSubsets({"int8", {}}));
}

TEST(RetuneEstimate, PatchedLayersMatchTheExactEncode) {
  const kv::KVCache cache = smoothCache(4, 96);
  const auto before = cachegen("16,16,24,24", "10,10,10,10");
  const auto after = cachegen("16,32,24,24", "10,10,10,10");
  const StagedEncode last = encodeWithStages(cache, before);
  const StagedEncode exact = encodeWithStages(cache, after);
  ASSERT_TRUE(layersCodedAlone(*last.result)) << "own tables, no calibrated weights";
  const auto touched = layersTouched(before, after, 4);
  ASSERT_TRUE(touched && touched->size() == 1u);
  const StagedEncode part =
      encodeWithStages(layerSubset(cache, *touched), layerSubsetConfig(after, *touched));
  const StagedEncode patched = patchLayers(last, part, *touched);
  const auto& p = patched.result->size;
  const auto& e = exact.result->size;
  ASSERT_EQ(p.layer_bytes.size(), e.layer_bytes.size());
  for (std::size_t i = 0; i < e.layer_bytes.size(); ++i) EXPECT_EQ(p.layer_bytes[i], e.layer_bytes[i]) << i;
  EXPECT_NE(last.result->size.layer_bytes[2], e.layer_bytes[2]) << "the change must move layer 1's keys";
  // Totals: the same up to the header's text of the bins.
  EXPECT_NEAR(double(p.encoded_bytes), double(e.encoded_bytes), 8.0);
  ASSERT_TRUE(patched.stages && exact.stages);
  for (std::size_t i = 0; i < e.layer_bytes.size(); ++i) {
    EXPECT_DOUBLE_EQ(patched.stages->raw_entropy.per_layer[i], exact.stages->raw_entropy.per_layer[i]) << i;
    EXPECT_DOUBLE_EQ(patched.stages->delta_entropy.per_layer[i], exact.stages->delta_entropy.per_layer[i])
        << i;
  }
  EXPECT_NEAR(patched.stages->delta_entropy.overall, exact.stages->delta_entropy.overall, 1e-9);
  EXPECT_NEAR(patched.stages->coded.overall, exact.stages->coded.overall, 1e-3);
}

// Regression (issue 21): the token-subset estimate scaled the symbol tables by
// the chunk count, though a stream ships one table per layer and kind: the
// first view of the default context was 20% above the exact size.
TEST(RetuneEstimate, RegressionTokenSubsetEstimateScaledTablesByChunks) {
  const kv::KVCache cache = smoothCache(2, 2048);  // 2 chunks of 1024 tokens
  const codec::CodecConfig config{"cachegen", {{"profile", ""}}};
  const StagedEncode exact = encodeWithStages(cache, config);
  const auto subset = tokenSubset(cache, 4, 64);
  ASSERT_NE(subset, nullptr);
  const StagedEncode estimate = scaleToFull(encodeWithStages(*subset, config), cache.shape(), subset->shape(),
                                            exact.result->size.header_bytes);
  // More tokens fill a table more, never less: the whole cache's tables are
  // at least the subset's (scaled by 2 chunks they were above).
  EXPECT_LE(estimate.result->size.table_bytes, exact.result->size.table_bytes);
  EXPECT_GE(estimate.result->size.table_bytes, exact.result->size.table_bytes / 2);
  // This smooth synthetic cache's spans are less typical than real text's
  // (1.4% on the default context): a looser bound.
  EXPECT_NEAR(estimate.result->size.bits_per_element(), exact.result->size.bits_per_element(),
              0.15 * exact.result->size.bits_per_element());
}

// A change every stream feels (group_size), estimated from 6 of 12 layers and
// the last exact encode: close to the exact encode, and its layers follow.
TEST(RetuneEstimate, SampledLayersScaleTheLastExactEncode) {
  const kv::KVCache cache = smoothCache(12, 1024);
  codec::CodecConfig before =
      cachegen("16,16,16,16,24,24,24,24,32,32,32,32", "10,10,10,10,10,10,10,10,10,10,10,10");
  ASSERT_TRUE(perLayerBins(before, 12));
  codec::CodecConfig after = before;
  after.params["group_size"] = "4";
  const StagedEncode last = encodeWithStages(cache, before);
  const StagedEncode exact = encodeWithStages(cache, after);
  const std::vector<int> layers = spreadLayers(12, 6);
  EXPECT_EQ(layers, (std::vector<int>{0, 2, 4, 7, 9, 11}));
  const kv::KVCache part = layerSubset(cache, layers);
  const StagedEncode now = encodeWithStages(part, layerSubsetConfig(after, layers));
  const StagedEncode was = encodeWithStages(part, layerSubsetConfig(before, layers));
  const StagedEncode estimate = scaleBySampledLayers(last, now, was, layers);
  const double e = exact.result->size.bits_per_element(), l = last.result->size.bits_per_element();
  ASSERT_GT(std::abs(e - l), 0.01 * l) << "the change must move the size";
  EXPECT_NEAR(estimate.result->size.bits_per_element(), e, 0.25 * std::abs(e - l) + 0.02 * e);
  ASSERT_TRUE(estimate.stages);
  EXPECT_NEAR(estimate.stages->delta_entropy.overall, exact.stages->delta_entropy.overall,
              0.05 * exact.stages->delta_entropy.overall);
  // Sampled layers are exact: their own new bytes.
  for (std::size_t i = 0; i < layers.size(); ++i)
    EXPECT_EQ(estimate.result->size.layer_bytes[std::size_t(layers[i]) * 2],
              now.result->size.layer_bytes[i * 2])
        << layers[i];
}

TEST(RetuneEstimate, TokenSubsetKeepsEachTokensPosition) {
  const kv::KVCache cache = smoothCache(2, 512);
  EXPECT_EQ(tokenSubset(cache, 4, 64), nullptr) << "small enough to encode whole";
  const auto subset = tokenSubset(cache, 2, 32);
  ASSERT_NE(subset, nullptr);
  ASSERT_EQ(subset->shape().tokens, 64);
  ASSERT_EQ(subset->info.positions.size(), 64u);
  EXPECT_EQ(subset->info.positions[0], 0);
  EXPECT_EQ(subset->info.positions[32], 512 - 32);
  EXPECT_EQ(subset->at(1, kv::Kind::Value, 1, 40, 3), cache.at(1, kv::Kind::Value, 1, 512 - 32 + 8, 3));
}

}  // namespace
}  // namespace kvscope::gui
#endif
