// SPDX-License-Identifier: Apache-2.0
// The transform codec's PCA: the symmetric eigen-solver, bases built from caches
// (orthonormal, reconstructing), and the "transform.basis" section format.
#include "kvscope/codec/transform_basis.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvscope/codec/synthetic.h"
#include "kvscope/common/error.h"

namespace kvscope::codec::transform {
namespace {

std::vector<double> random_covariance(int n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> N;
  std::vector<double> b(std::size_t(n) * n), a(std::size_t(n) * n, 0.0);
  for (auto& v : b) v = N(rng);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < n; ++k)
        a[std::size_t(i) * n + j] += b[std::size_t(i) * n + k] * b[std::size_t(j) * n + k];
  return a;
}

TEST(TransformEigen, DecomposesASymmetricMatrix) {
  for (int n : {1, 2, 7, 64}) {
    const auto a = random_covariance(n, 7 + n);
    std::vector<double> ev(n), v(std::size_t(n) * n);
    symmetric_eigen(n, a, ev, v);
    double scale = 0;
    for (double x : a) scale = std::max(scale, std::abs(x));
    for (int j = 1; j < n; ++j) EXPECT_GE(ev[j - 1], ev[j]);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double dot = 0, rec = 0;
        for (int k = 0; k < n; ++k) {
          dot += v[std::size_t(i) * n + k] * v[std::size_t(j) * n + k];
          rec += v[std::size_t(k) * n + i] * ev[k] * v[std::size_t(k) * n + j];
        }
        EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-12) << n << " " << i << " " << j;
        EXPECT_NEAR(rec, a[std::size_t(i) * n + j], 1e-11 * scale) << n << " " << i << " " << j;
      }
  }
}

TEST(TransformEigen, RejectsBadInput) {
  std::vector<double> a = {1, 2, 2, std::nan("")}, ev(2), v(4);
  EXPECT_THROW(symmetric_eigen(2, a, ev, v), Error);
  EXPECT_THROW(symmetric_eigen(3, a, ev, v), Error);
}

kv::KVCache pre_rope_cache(kv::CacheShape shape, std::uint64_t seed) {
  auto c = synthetic_cache(shape, seed);
  c.info.rope_applied = false;
  return c;
}

void expect_orthonormal_and_reconstructing(const BasisSet& set, const kv::KVCache& cache, int skip) {
  const int n = set.group_dim();
  for (int l = 0; l < set.layers; ++l)
    for (kv::Kind k : kv::kKinds)
      for (int g = 0; g < set.groups(); ++g) {
        const GroupBasis& b = set.at(l, k, g);
        ASSERT_EQ(b.n, n);
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) {
            double dot = 0;
            for (int c = 0; c < n; ++c) dot += double(b.component(i)[c]) * b.component(j)[c];
            EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 2e-6);
          }
        // Projecting a token and back gives the token (float rounding only),
        // and the coefficients' variances are the eigenvalues.
        std::vector<double> power(n, 0.0);
        int count = 0;
        for (int t = skip; t < cache.shape().tokens; ++t, ++count) {
          std::vector<double> x(n), y(n, 0.0);
          for (int c = 0; c < n; ++c) {
            const int h = set.grouping == Grouping::Layer ? c / set.head_dim : g;
            x[c] = cache.at(l, k, h, t, c % set.head_dim) - b.mean[c];
          }
          for (int j = 0; j < n; ++j)
            for (int c = 0; c < n; ++c) y[j] += b.component(j)[c] * x[c];
          double scale = 1e-6;
          for (int c = 0; c < n; ++c) scale = std::max(scale, std::abs(x[c]));
          for (int c = 0; c < n; ++c) {
            double back = 0;
            for (int j = 0; j < n; ++j) back += b.component(j)[c] * y[j];
            EXPECT_NEAR(back, x[c], 1e-5 * scale * n);
          }
          for (int j = 0; j < n; ++j) power[j] += y[j] * y[j];
        }
        for (int j = 0; j < n; ++j)
          EXPECT_NEAR(power[j] / count, b.variance[j], 1e-4 * (b.variance[0] + 1e-6)) << j;
      }
}

TEST(TransformBasis, IsOrthonormalAndReconstructsEachGrouping) {
  const auto cache = pre_rope_cache({2, 3, 40, 8}, 11);
  for (Grouping g : {Grouping::Layer, Grouping::Head}) {
    const BasisSet set = build_basis_set(cache, g, 1);
    EXPECT_EQ(set.tokens, 39u);
    EXPECT_EQ(int(set.bases.size()), 2 * 2 * set.groups());
    expect_orthonormal_and_reconstructing(set, cache, 1);
  }
}

TEST(TransformBasis, CalibrationHoldsBothGroupingsAndSurvivesSerialisation) {
  std::vector<kv::KVCache> caches = {pre_rope_cache({2, 2, 30, 4}, 1), pre_rope_cache({2, 2, 17, 4}, 2)};
  const Calibration cal = build_calibration(caches);
  ASSERT_NE(cal.find(Grouping::Layer), nullptr);
  ASSERT_NE(cal.find(Grouping::Head), nullptr);
  EXPECT_EQ(cal.find(Grouping::Layer)->tokens, 29u + 16u);
  const auto bytes = serialize_calibration(cal);
  const Calibration back = parse_calibration(bytes, "mem");
  ASSERT_EQ(back.sets.size(), 2u);
  EXPECT_EQ(serialize_calibration(back), bytes);
}

TEST(TransformBasis, RefusesKeysAfterRopeAndMismatchedCaches) {
  auto post = synthetic_cache({2, 2, 30, 4}, 1);
  ASSERT_TRUE(post.info.rope_applied);
  EXPECT_THROW(build_basis_set(post, Grouping::Layer, 1), Error);
  std::vector<kv::KVCache> mixed = {pre_rope_cache({2, 2, 30, 4}, 1), pre_rope_cache({3, 2, 30, 4}, 1)};
  EXPECT_THROW(build_calibration(mixed), Error);
  EXPECT_THROW(build_calibration({}), Error);
  EXPECT_THROW(build_basis_set(pre_rope_cache({1, 1, 2, 4}, 1), Grouping::Layer, 1), Error);
}

TEST(TransformBasis, MalformedSectionsAreFormatErrors) {
  std::vector<kv::KVCache> caches = {pre_rope_cache({1, 2, 20, 4}, 3)};
  const auto bytes = serialize_calibration(build_calibration(caches));
  for (std::size_t n = 0; n < bytes.size(); n += 1 + n / 8)
    EXPECT_THROW(parse_calibration({bytes.data(), n}, "cut"), Error) << n;
  auto extra = bytes;
  extra.push_back(0);
  EXPECT_THROW(parse_calibration(extra, "extra"), Error);
  auto version = bytes;
  version[0] = 9;
  EXPECT_THROW(parse_calibration(version, "version"), Error);
  // The first eigenvalue of the first basis made smaller than the second: out of order.
  auto order = bytes;
  const std::size_t first_variance = 2 + 1 + 1 + 12 + 8 + 8 * 4;  // u16 version, count, grouping, shape, mean
  for (int i = 0; i < 4; ++i) order[first_variance + i] = 0;
  EXPECT_THROW(parse_calibration(order, "order"), Error);
}

}  // namespace
}  // namespace kvscope::codec::transform
