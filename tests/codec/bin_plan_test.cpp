// SPDX-License-Identifier: Apache-2.0
// Bin plans from measured layer sensitivity (kvscope/codec/bin_plan.h).
#include "kvscope/codec/bin_plan.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>

#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

LayerSensitivity example() {
  LayerSensitivity s;
  s.layers = 4;
  s.base_bins = 32;
  s.coarse_bins = 8;
  s.base_kl = 0.01;
  s.key_kl = {0.001, 0.004, 0.016, 0.064};
  s.value_kl = {0.064, 0.001, -0.0001, 0.002};
  s.params = "sinks=1;scale=token";
  s.contexts = {"kjv-genesis", "apache-2.0"};
  s.context_tokens = 1023;
  s.scored_tokens = 128;
  return s;
}

TEST(BinPlan, SensitivitySectionRoundTrips) {
  const auto s = example();
  const auto back = parse_sensitivity(serialize_sensitivity(s), "x");
  EXPECT_EQ(back.layers, 4);
  EXPECT_EQ(back.key_kl, s.key_kl);
  EXPECT_EQ(back.value_kl, s.value_kl);
  EXPECT_EQ(back.params, s.params);
  EXPECT_EQ(back.contexts, s.contexts);
  EXPECT_EQ(back.scored_tokens, 128);
}

TEST(BinPlan, TruncatedOrTamperedSectionsAreFormatErrors) {
  const auto bytes = serialize_sensitivity(example());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    try {
      parse_sensitivity(std::span(bytes).first(n), "cut");
      FAIL() << "truncated at " << n;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format);
    }
  }
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto bad = bytes;
    bad[i] ^= 0xff;
    try {
      parse_sensitivity(bad, "flipped");  // may parse (a changed number), must not crash
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format);
    }
  }
}

TEST(BinPlan, MoreSensitiveLayersGetMoreBins) {
  const auto plan = plan_bins(example(), 3.0);
  // Key sensitivity grows 4x per layer: sqrt gives 2x the M per layer.
  EXPECT_LT(plan.key_bins[0], plan.key_bins[1]);
  EXPECT_LT(plan.key_bins[1], plan.key_bins[2]);
  EXPECT_LT(plan.key_bins[2], plan.key_bins[3]);
  EXPECT_GT(plan.value_bins[0], plan.value_bins[1]);
  // A negative (noise) measurement still gets the floor, not fewer than 4 bins.
  EXPECT_GE(plan.value_bins[2], 4);
  for (int b : plan.key_bins) EXPECT_EQ(b % 2, 0);
}

TEST(BinPlan, HigherLevelsNeverLowerAnyLayer) {
  const auto s = example();
  auto lo = plan_bins(s, 2.0), hi = plan_bins(s, 3.5);
  for (int l = 0; l < 4; ++l) {
    EXPECT_LE(lo.key_bins[l], hi.key_bins[l]);
    EXPECT_LE(lo.value_bins[l], hi.value_bins[l]);
  }
  const auto p = plan_params(hi);
  EXPECT_EQ(p.at("key_layer_splits"), "");
  EXPECT_EQ(std::count(p.at("key_bins").begin(), p.at("key_bins").end(), ','), 3);
}

TEST(BinPlan, BudgetSearchStaysWithinTheBudget) {
  const auto cache = synthetic_cache({4, 2, 256, 16}, 3);
  const auto s = example();
  for (double target : {2.5, 3.5}) {
    const auto plan = plan_for_budget(cache, {{"sinks", "1"}}, s, target);
    ParamSet p = plan_params(plan);
    p["sinks"] = "1";
    const double bits = find_codec("cachegen").encode(cache, p).size.bits_per_element();
    EXPECT_LE(bits, target);
    EXPECT_GT(bits, target - 0.6) << "the search should land close below the budget";
  }
  auto wrong = s;
  wrong.layers = 3;
  wrong.key_kl.resize(3);
  wrong.value_kl.resize(3);
  EXPECT_THROW(plan_for_budget(cache, {}, wrong, 3.0), Error);
}

// Guards against the default bins drifting from the measurement they are
// documented as (the plan at level 2.9 of the sensitivity kept in
// docs/results/tune, docs/cachegen-defaults.md), as when the plan was re-measured
// at the defaults and only the docs changed.
TEST(BinPlan, DefaultBinsAreThePlanOfTheKeptSensitivity) {
  const auto path =
      std::filesystem::path(KVSCOPE_SOURCE_DIR) / "docs/results/tune/sensitivity-defaults.kvssens";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  const auto s = parse_sensitivity(bytes, path.string());
  ASSERT_EQ(s.layers, 30);
  const auto plan = plan_params(plan_bins(s, 2.9));
  kv::CacheShape shape;
  shape.layers = 30;
  shape.kv_heads = 3;
  shape.head_dim = 64;
  int checked = 0;
  for (const auto& spec : find_codec("cachegen").params(&shape)) {
    if (spec.name != "key_bins" && spec.name != "value_bins") continue;
    EXPECT_EQ(spec.default_value, plan.at(spec.name)) << spec.name;
    ++checked;
  }
  EXPECT_EQ(checked, 2);
}

}  // namespace
}  // namespace kvscope::codec
