// SPDX-License-Identifier: Apache-2.0
#include "transform_model.h"

#include <algorithm>
#include <cmath>

namespace kvscope::codec::detail::transform {

void geometric_freqs(std::uint16_t rho, int classes, std::uint32_t* freq) {
  // Weights in 32-bit fixed point: p[k] = rho^(2^k) by repeated squaring
  // (truncating); symbol 0 weighs (1 - rho); class k (each sign) weighs the
  // mass of |d| in [2^k, 2^(k+1)), p[k] - p[k+1], times (1 - rho); the
  // last class takes the whole tail p[K-1]. Integer only: docs/bitstream.md.
  const int n = alphabet(classes);
  std::array<std::uint64_t, alphabet(kMaxClasses)> w{};
  std::uint64_t p = std::uint64_t(rho) << 16;
  w[0] = (std::uint64_t(1) << 32) - p;
  for (int k = 0; k < classes; ++k) {
    const std::uint64_t next = (p * p) >> 32;
    const std::uint64_t mass = k + 1 == classes ? p : p - next;
    w[1 + 2 * k] = w[2 + 2 * k] = mass;
    p = next;
  }
  std::uint64_t total = 0;
  for (int s = 0; s < n; ++s) total += w[s];
  std::uint32_t sum = 0, top = 0;
  int top_s = 0;
  for (int s = 0; s < n; ++s) {
    const std::uint32_t f = 1 + std::uint32_t(w[s] * std::uint64_t(kProbTotal - n) / total);
    freq[s] = f;
    sum += f;
    if (f > top) top = f, top_s = s;
  }
  freq[top_s] += kProbTotal - sum;
}

FreqModel geometric_model(std::uint16_t rho, int classes) {
  const int n = alphabet(classes);
  std::uint32_t f[alphabet(kMaxClasses)];
  geometric_freqs(rho, classes, f);
  FreqModel m;
  m.cdf.assign(n + 1, 0);
  for (int s = 0; s < n; ++s) m.cdf[s + 1] = m.cdf[s] + f[s];
  return m;
}

double model_cost_bits(std::span<const std::uint64_t> counts, std::uint16_t rho, int classes) {
  std::uint32_t f[alphabet(kMaxClasses)];
  geometric_freqs(rho, classes, f);
  double bits = 0;
  const int n = std::min(alphabet(classes), int(counts.size()));
  for (int s = 0; s < n; ++s)
    if (counts[s]) bits += double(counts[s]) * (kProbBits - std::log2(double(f[s])));
  return bits;
}

std::uint16_t rho_estimate(double mean_abs) {
  if (!(mean_abs > 0)) return 0;
  // E|d| = 2 rho / (1 - rho^2)  =>  rho = (sqrt(1 + m^2) - 1) / m.
  const double rho = (std::sqrt(1.0 + mean_abs * mean_abs) - 1.0) / mean_abs;
  return std::uint16_t(std::clamp(std::lround(rho * 65536.0), 0L, 65535L));
}

std::uint16_t fit_rho(std::span<const std::uint64_t> counts, int classes, double mean_abs) {
  if (classes == 0) return 0;
  // The cost is close to convex in rho: probe both sides of the estimate
  // at halving distances (the optimum is flat: 1/4096 of rho is plenty).
  int best = rho_estimate(mean_abs);
  double best_cost = model_cost_bits(counts, std::uint16_t(best), classes);
  for (int step = 2048; step >= 16; step /= 2)
    for (int dir : {-1, 1}) {
      const int cand = std::clamp(best + dir * step, 0, 65535);
      const double c = model_cost_bits(counts, std::uint16_t(cand), classes);
      if (c < best_cost) {
        best = cand, best_cost = c;
        break;
      }
    }
  return std::uint16_t(best);
}

}  // namespace kvscope::codec::detail::transform
