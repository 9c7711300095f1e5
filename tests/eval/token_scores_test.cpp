// SPDX-License-Identifier: Apache-2.0
// Per-token scores and their bootstrap intervals (core/eval/token_scores.h).
#include "kvscope/eval/token_scores.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kvscope/common/error.h"
#include "kvscope/eval/metrics.h"

namespace kvscope::eval {
namespace {

TEST(TokenScores, MeansEqualTheSummaryMetrics) {
  // Three rows, vocab 3.
  const std::vector<float> ref = {0, 1, 2, 2, 0, 0, 0, 0, 3};
  const std::vector<float> test = {0, 2, 1, 2, 1, 0, 1, 0, 3};
  const std::vector<std::int32_t> targets = {2, 0, 2};
  const TokenScores s = token_scores(ref, test, 3, targets);
  ASSERT_EQ(s.size(), 3u);
  double kl = 0, nll = 0, top1 = 0;
  for (std::size_t i = 0; i < s.size(); ++i) kl += s.kl[i], nll += s.nll[i], top1 += s.top1[i];
  EXPECT_NEAR(kl / 3, mean_kl(ref, test, 3), 1e-12);
  EXPECT_NEAR(top1 / 3, top1_agreement(ref, test, 3), 1e-12);
  EXPECT_NEAR(std::exp(nll / 3), perplexity(test, 3, targets), 1e-9);
  EXPECT_EQ(s.top1[0], 0);  // argmax 2 vs 1
  EXPECT_EQ(s.top1[1], 1);
}

TEST(TokenScores, SizeMismatchIsAnError) {
  EXPECT_THROW(token_scores({0, 1}, {0, 1, 2}, 2, {0}), Error);
  EXPECT_THROW(token_scores({0, 1}, {0, 1}, 2, {5}), Error);
}

TEST(TokenScores, BootstrapIntervalsContainTheMeanAndShrinkWithMoreTokens) {
  auto scores = [](int n) {
    TokenScores s;
    for (int i = 0; i < n; ++i) {
      s.kl.push_back(0.01 * double(i % 7));
      s.nll.push_back(2.0 + 0.1 * double(i % 5));
      s.nll_ref.push_back(2.0 + 0.1 * double((i + 1) % 5));
      s.top1.push_back(i % 10 != 0);
    }
    return s;
  };
  const TokenScores small = scores(64), large = scores(1024);
  const QualityIntervals a = bootstrap_intervals(small), b = bootstrap_intervals(large);
  double mean = 0;
  for (double v : small.kl) mean += v;
  mean /= double(small.size());
  EXPECT_LE(a.kl.lo, mean);
  EXPECT_GE(a.kl.hi, mean);
  EXPECT_LT(b.kl.hi - b.kl.lo, a.kl.hi - a.kl.lo);
  EXPECT_LT(b.top1.hi - b.top1.lo, a.top1.hi - a.top1.lo);
  EXPECT_LE(a.delta_ppl_pct.lo, a.delta_ppl_pct.hi);
  EXPECT_EQ(a.resamples, 1000);
  EXPECT_DOUBLE_EQ(a.confidence, 0.95);
  // Deterministic for a seed.
  const QualityIntervals again = bootstrap_intervals(small);
  EXPECT_EQ(again.kl.lo, a.kl.lo);
  EXPECT_EQ(again.delta_ppl_pct.hi, a.delta_ppl_pct.hi);
}

TEST(TokenScores, BootstrapOfIdenticalSidesIsZeroWidthForPerplexity) {
  TokenScores s;
  for (int i = 0; i < 50; ++i) {
    s.kl.push_back(0);
    s.nll.push_back(1.0 + i * 0.01);
    s.nll_ref.push_back(1.0 + i * 0.01);
    s.top1.push_back(1);
  }
  const QualityIntervals q = bootstrap_intervals(s);
  EXPECT_NEAR(q.delta_ppl_pct.lo, 0, 1e-9);
  EXPECT_NEAR(q.delta_ppl_pct.hi, 0, 1e-9);
  EXPECT_EQ(q.top1.lo, 1);
  EXPECT_THROW(bootstrap_intervals(TokenScores{}), Error);
  EXPECT_THROW(bootstrap_intervals(s, 5), Error);
}

}  // namespace
}  // namespace kvscope::eval
