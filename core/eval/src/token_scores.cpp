// SPDX-License-Identifier: Apache-2.0
#include "kvscope/eval/token_scores.h"

#include <algorithm>
#include <cmath>

#include "kvscope/common/error.h"
#include "logit_rows.h"

namespace kvscope::eval {
namespace {

using detail::argmax;
using detail::log_sum_exp;

// SplitMix64: a small, well-mixed generator whose output is the same on
// every platform (std:: distributions are not), so intervals reproduce.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return std::size_t(next() % n); }
};

// The value at fraction q of sorted `v` (linear interpolation between ranks).
double quantile(std::vector<double>& v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const std::size_t i = std::size_t(pos);
  const double frac = pos - double(i);
  return i + 1 < v.size() ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
}

}  // namespace

TokenScores token_scores(const std::vector<float>& ref, const std::vector<float>& test, int vocab,
                         const std::vector<std::int32_t>& targets) {
  require(vocab > 0 && ref.size() == test.size() && ref.size() == targets.size() * std::size_t(vocab) &&
              !targets.empty(),
          ErrorCode::InvalidArgument, "token_scores: logits and targets differ in size");
  TokenScores s;
  const std::size_t rows = targets.size();
  s.kl.reserve(rows);
  s.nll.reserve(rows);
  s.nll_ref.reserve(rows);
  s.top1.reserve(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    require(targets[r] >= 0 && targets[r] < vocab, ErrorCode::InvalidArgument,
            "token_scores: target id out of range");
    const float* pa = ref.data() + r * std::size_t(vocab);
    const float* pb = test.data() + r * std::size_t(vocab);
    const double la = log_sum_exp(pa, vocab), lb = log_sum_exp(pb, vocab);
    s.kl.push_back(detail::row_kl(pa, la, pb, lb, vocab));
    s.nll.push_back(lb - double(pb[targets[r]]));
    s.nll_ref.push_back(la - double(pa[targets[r]]));
    s.top1.push_back(argmax(pa, vocab) == argmax(pb, vocab) ? 1 : 0);
  }
  return s;
}

QualityIntervals bootstrap_intervals(const TokenScores& scores, int resamples, double confidence,
                                     std::uint64_t seed) {
  const std::size_t n = scores.size();
  require(n > 0 && scores.nll.size() == n && scores.nll_ref.size() == n && scores.top1.size() == n,
          ErrorCode::InvalidArgument, "bootstrap_intervals: no scores, or vectors of different lengths");
  require(resamples >= 10 && confidence > 0 && confidence < 1, ErrorCode::InvalidArgument,
          "bootstrap_intervals: resamples must be >= 10 and confidence in (0, 1)");
  SplitMix64 rng{seed};
  const auto count = static_cast<std::size_t>(resamples);
  std::vector<double> kl(count), top1(count), dppl(count);
  for (int b = 0; b < resamples; ++b) {
    double skl = 0, snll = 0, sref = 0, stop = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t j = rng.below(n);
      skl += scores.kl[j];
      snll += scores.nll[j];
      sref += scores.nll_ref[j];
      stop += scores.top1[j];
    }
    kl[std::size_t(b)] = skl / double(n);
    top1[std::size_t(b)] = stop / double(n);
    dppl[std::size_t(b)] = 100.0 * (std::exp((snll - sref) / double(n)) - 1.0);
  }
  const double a = (1 - confidence) / 2;
  QualityIntervals q;
  q.kl = {quantile(kl, a), quantile(kl, 1 - a)};
  q.top1 = {quantile(top1, a), quantile(top1, 1 - a)};
  q.delta_ppl_pct = {quantile(dppl, a), quantile(dppl, 1 - a)};
  q.resamples = resamples;
  q.confidence = confidence;
  return q;
}

}  // namespace kvscope::eval
