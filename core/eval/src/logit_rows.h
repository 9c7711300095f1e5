// SPDX-License-Identifier: Apache-2.0
#pragma once

// Row helpers over one token's logits ([vocab] floats), shared by the
// quality metrics and the per-token scores.
#include <algorithm>
#include <cmath>

namespace kvscope::eval::detail {

/// log(sum(exp(row))) in double, shifted by the row's maximum so no term overflows.
inline double log_sum_exp(const float* row, int vocab) {
  float mx = row[0];
  for (int i = 1; i < vocab; ++i) mx = std::max(mx, row[i]);
  double s = 0;
  for (int i = 0; i < vocab; ++i) s += std::exp(double(row[i]) - mx);
  return double(mx) + std::log(s);
}

/// Index of the row's largest logit (the first one on ties).
inline int argmax(const float* row, int vocab) {
  return int(std::max_element(row, row + vocab) - row);
}

/// KL(softmax(a) || softmax(b)) of one row pair, in nats, in double, given
/// la = log_sum_exp(a) and lb = log_sum_exp(b); never negative (rounding can
/// give -1e-17).
inline double row_kl(const float* a, double la, const float* b, double lb, int vocab) {
  double kl = 0;
  for (int i = 0; i < vocab; ++i) {
    const double lpa = double(a[i]) - la, lpb = double(b[i]) - lb;
    kl += std::exp(lpa) * (lpa - lpb);
  }
  return std::max(0.0, kl);
}

}  // namespace kvscope::eval::detail
