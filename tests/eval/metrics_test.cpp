// SPDX-License-Identifier: Apache-2.0
// Logit comparisons against hand-computed values.
#include "kvscope/eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kvscope/common/error.h"

namespace kvscope::eval {
namespace {

TEST(EvalMetrics, PerplexityOfUniformIsVocab) {
  const std::vector<float> logits = {0, 0, 0, 0, 5, 5, 5, 5};  // two rows, vocab 4, both uniform
  EXPECT_NEAR(perplexity(logits, 4, {1, 3}), 4.0, 1e-12);
}

TEST(EvalMetrics, PerplexityHandValue) {
  // Row 0: p(target 0) = 1/(1+e); row 1: p(target 1) = e/(1+e).
  const std::vector<float> logits = {0, 1, 0, 1};
  const double nll = (std::log(1 + std::exp(1.0)) + (std::log(1 + std::exp(1.0)) - 1.0)) / 2;
  EXPECT_NEAR(perplexity(logits, 2, {0, 1}), std::exp(nll), 1e-6);
}

TEST(EvalMetrics, KlHandValue) {
  const std::vector<float> a = {0, float(std::log(3.0))};  // P = (1/4, 3/4)
  const std::vector<float> b = {0, 0};                     // Q = (1/2, 1/2)
  EXPECT_NEAR(mean_kl(a, b, 2), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-7);
  EXPECT_EQ(mean_kl(a, a, 2), 0.0);
}

TEST(EvalMetrics, Top1Agreement) {
  const std::vector<float> a = {1, 0, 0, 1, 2, 1};
  const std::vector<float> b = {1, 0, 1, 0, 2, 1};
  EXPECT_DOUBLE_EQ(top1_agreement(a, b, 2), 2.0 / 3.0);
}

TEST(EvalMetrics, RejectsMismatchedSizes) {
  EXPECT_THROW(perplexity({0, 0, 0}, 2, {0}), Error);
  EXPECT_THROW(perplexity({0, 0}, 2, {0, 1}), Error);
  EXPECT_THROW(perplexity({0, 0}, 2, {2}), Error);
  EXPECT_THROW(mean_kl({0, 0}, {0, 0, 0, 0}, 2), Error);
}

}  // namespace
}  // namespace kvscope::eval
