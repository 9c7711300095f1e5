// SPDX-License-Identifier: Apache-2.0
#pragma once

// Per-token quality scores of one continuation and bootstrap intervals over
// them: how sure a mean KL, top-1 agreement or perplexity change is, given
// that only M tokens were scored. Pure arithmetic (no model needed).

#include <cstdint>
#include <vector>

namespace kvscope::eval {

/// One entry per scored continuation token (all four vectors the same length).
struct TokenScores {
  std::vector<double> kl;          ///< KL(P_ref || P) in nats
  std::vector<double> nll;         ///< -ln P(target) from the decoded cache
  std::vector<double> nll_ref;     ///< -ln P_ref(target) from the reference cache
  std::vector<std::uint8_t> top1;  ///< 1 when the argmaxes agree (first maximum on ties)
  std::size_t size() const { return kl.size(); }
};

/// Scores of logit rows `test` against `ref` ([rows x vocab] each) for
/// `targets` (one per row). Error(InvalidArgument) on a size mismatch or a
/// target out of range. Means of the result equal mean_kl, top1_agreement
/// and ln(perplexity).
TokenScores token_scores(const std::vector<float>& ref, const std::vector<float>& test, int vocab,
                         const std::vector<std::int32_t>& targets);

/// A two-sided interval.
struct Interval {
  double lo = 0, hi = 0;
};

/// Percentile-bootstrap intervals of the three summary metrics, resampling
/// scored tokens with replacement (paired: one resample draws the same
/// tokens for the decoded and the reference side, so the perplexity change
/// is not widened by the reference's own spread). Deterministic for a seed.
struct QualityIntervals {
  Interval kl;             ///< mean KL, nats
  Interval top1;           ///< top-1 agreement, fraction
  Interval delta_ppl_pct;  ///< 100 * (exp(mean nll) / exp(mean nll_ref) - 1)
  int resamples = 0;
  double confidence = 0;
};

/// `resamples` >= 10, `confidence` in (0, 1). Error(InvalidArgument) otherwise
/// or when `scores` is empty.
QualityIntervals bootstrap_intervals(const TokenScores& scores, int resamples = 1000,
                                     double confidence = 0.95, std::uint64_t seed = 0x5eed);

}  // namespace kvscope::eval
