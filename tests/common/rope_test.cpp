// SPDX-License-Identifier: Apache-2.0
// RoPE on cached keys (kvscope/kv/rope.h): the rotation matches an
// independent binary64 computation, removal undoes it, per-layer tables are
// honoured, and bad tables are refused.
#include "kvscope/kv/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <utility>

#include "kvscope/common/error.h"

namespace kvscope::kv {
namespace {

KVCache random_cache(const CacheShape& s, unsigned seed = 3) {
  KVCache c(s);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 3.f);
  for (float& v : c.data()) v = d(rng);
  return c;
}

TEST(Rope, PlainFrequenciesFollowTheta) {
  const auto f = plain_rope_inv_freq(10000.0, 8);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[1], std::pow(10000.0, -0.25), 1e-15);
  EXPECT_NEAR(f[3], std::pow(10000.0, -0.75), 1e-15);
  EXPECT_THROW(plain_rope_inv_freq(10000.0, 7), Error);
  EXPECT_THROW(plain_rope_inv_freq(-1.0, 8), Error);
}

TEST(Rope, ApplyMatchesAnIndependentBinary64Rotation) {
  const CacheShape s{2, 2, 9, 8};
  KVCache c = random_cache(s);
  c.info.rope_theta = 500.0;
  c.info.positions = {0, 1, 2, 3, 10, 11, 12, 100, 4095};
  const KVCache before = c;
  c.info.rope_applied = false;
  apply_rope(c);
  EXPECT_TRUE(c.info.rope_applied);
  const int half = s.head_dim / 2;
  for (int l = 0; l < s.layers; ++l)
    for (int h = 0; h < s.kv_heads; ++h)
      for (int t = 0; t < s.tokens; ++t)
        for (int i = 0; i < half; ++i) {
          const double a = c.info.positions[t] * std::pow(500.0, -2.0 * i / s.head_dim);
          const double x0 = before.at(l, Kind::Key, h, t, i), x1 = before.at(l, Kind::Key, h, t, i + half);
          EXPECT_NEAR(c.at(l, Kind::Key, h, t, i), x0 * std::cos(a) - x1 * std::sin(a), 1e-5);
          EXPECT_NEAR(c.at(l, Kind::Key, h, t, i + half), x1 * std::cos(a) + x0 * std::sin(a), 1e-5);
        }
  // Values are never rotated.
  for (int l = 0; l < s.layers; ++l) {
    const auto a = std::as_const(c).tensor(l, Kind::Value), b = before.tensor(l, Kind::Value);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
  }
}

TEST(Rope, RemoveUndoesApplyWithinAFewUlps) {
  KVCache c = random_cache({3, 3, 64, 16});
  c.info.rope_theta = 100000.0;
  const KVCache original = c;
  remove_rope(c);
  EXPECT_FALSE(c.info.rope_applied);
  remove_rope(c);  // already removed: a no-op
  apply_rope(c);
  EXPECT_LT(max_abs_difference(c, original), 1e-5f);
}

TEST(Rope, EachLayerUsesItsOwnTable) {
  const CacheShape s{2, 1, 5, 4};
  KVCache a = random_cache(s), b = a;
  a.info.rope_applied = b.info.rope_applied = false;
  a.info.rope_inv_freq = {{1.0, 0.5}, {0.25, 0.125}};
  b.info.rope_inv_freq = {{1.0, 0.5}, {1.0, 0.5}};
  apply_rope(a);
  apply_rope(b);
  const auto a0 = std::as_const(a).tensor(0, Kind::Key), b0 = std::as_const(b).tensor(0, Kind::Key);
  EXPECT_TRUE(std::equal(a0.begin(), a0.end(), b0.begin()));
  const auto a1 = std::as_const(a).tensor(1, Kind::Key), b1 = std::as_const(b).tensor(1, Kind::Key);
  EXPECT_FALSE(std::equal(a1.begin(), a1.end(), b1.begin()));
}

TEST(Rope, RotationIsDeterministicBitForBit) {
  // Decoders on other machines must reproduce it: two runs agree exactly.
  KVCache a = random_cache({1, 2, 33, 8}), b = a;
  a.info.rope_applied = b.info.rope_applied = false;
  apply_rope(a);
  apply_rope(b);
  EXPECT_EQ(max_abs_difference(a, b), 0.0f);
}

TEST(Rope, RefusesTablesThatDoNotFitTheShape) {
  KVCache c = random_cache({2, 1, 4, 8});
  c.info.rope_inv_freq = {{1.0, 0.5, 0.25, 0.125}};  // one table for two layers
  EXPECT_THROW(remove_rope(c), Error);
  c.info.rope_inv_freq = {{1.0, 0.5}, {1.0, 0.5}};  // head_dim/2 is 4
  EXPECT_THROW(remove_rope(c), Error);
  c.info.rope_inv_freq = {{1.0, 0.5, 0.25, NAN}, {1.0, 0.5, 0.25, 0.125}};
  EXPECT_THROW(remove_rope(c), Error);
}

}  // namespace
}  // namespace kvscope::kv
