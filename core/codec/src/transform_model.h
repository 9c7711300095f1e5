// SPDX-License-Identifier: Apache-2.0
#pragma once

// Symbol models of the `transform` codec (docs/bitstream.md, "transform"):
// a quantized coefficient's offset d from its component's center is coded as
// a magnitude-class symbol (0; +/-[1,2); +/-[2,4); ...; +/-[2^15, 2^16)) with
// a two-sided geometric model P(d) ~ rho^|d| built from one 16-bit
// parameter in integer arithmetic only (any decoder rebuilds it exactly),
// followed by the class's low bits at a uniform probability. Nothing but
// (rho, class count) travels per component: no tables.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>

#include "entropy.h"

namespace kvscope::codec::detail::transform {

/// Largest number of magnitude classes: |d| < 2^kMaxClasses.
inline constexpr int kMaxClasses = 16;
/// Symbols of a model with K classes: 1 + 2K.
inline constexpr int alphabet(int classes) {
  return 1 + 2 * classes;
}

/// Class k of |d| >= 1 (2^k <= |d| < 2^(k+1)).
inline int magnitude_class(std::uint32_t mag) {
  return 31 - __builtin_clz(mag);
}

/// Symbol of d: 0 for d = 0, 1 + 2k for d in [2^k, 2^(k+1)), 2 + 2k for
/// -d in that range. Precondition: |d| < 2^16.
inline int symbol_of(int d) {
  if (d == 0) return 0;
  const std::uint32_t mag = std::uint32_t(d < 0 ? -d : d);
  return 1 + 2 * magnitude_class(mag) + (d < 0);
}

/// Classes needed to code every d with |d| <= max_abs (0 when max_abs is 0).
inline int classes_for(std::uint32_t max_abs) {
  return max_abs == 0 ? 0 : magnitude_class(max_abs) + 1;
}

/// Frequencies (alphabet(classes) entries) of the model below.
void geometric_freqs(std::uint16_t rho, int classes, std::uint32_t* freq);

/// The model of parameter rho (ratio rho/65536) over `classes` classes
/// (0..kMaxClasses): frequencies summing to 65536, every symbol >= 1.
FreqModel geometric_model(std::uint16_t rho, int classes);

/// Ideal code length in bits of symbol counts (alphabet(classes) entries)
/// under geometric_model(rho, classes), low bits excluded.
double model_cost_bits(std::span<const std::uint64_t> counts, std::uint16_t rho, int classes);

/// The rho whose model codes `counts` in the fewest bits (deterministic
/// search started at the maximum-likelihood estimate for mean |d| = mean_abs).
std::uint16_t fit_rho(std::span<const std::uint64_t> counts, int classes, double mean_abs);

/// The maximum-likelihood rho for a two-sided geometric law with mean |d| = mean_abs.
std::uint16_t rho_estimate(double mean_abs);

/// round_half_even(x) for |x| <= 2^50 (in the default rounding mode), without
/// a libm call: adding and removing 1.5 * 2^52 leaves the rounded value.
inline double round_even(double x) {
  constexpr double kMagic = 6755399441055744.0;
  return (x + kMagic) - kMagic;
}

/// The encoder's quantizer: the offset d of u (a coefficient in steps) from
/// `center`, rounded to nearest with a dead zone: |d| = floor(|u - center| +
/// 0.5 - deadzone), clamped to 2^16 - 1. A dead zone in [0, 0.5) trades a
/// little distortion for fewer nonzero symbols (rate-distortion optimised
/// rounding for peaked, Laplacian-like coefficients); 0 is plain rounding.
inline int quantize_offset(double u, double center, double deadzone) {
  const double v = u - center;
  const double a = std::floor(std::min(std::abs(v), 1e9) + 0.5 - deadzone);
  const int m = a <= 0 ? 0 : int(std::min(a, double((1 << kMaxClasses) - 1)));
  return v < 0 ? -m : m;
}

/// Codes d (|d| < 2^classes) with `model`: the class symbol, then the low bits.
inline void encode_offset(RangeEncoder& enc, const FreqModel& model, int d) {
  const int s = symbol_of(d);
  enc.encode(model.cdf[s], model.freq(s));
  if (s > 0) {
    const int k = (s - 1) >> 1;
    if (k > 0) {
      const std::uint32_t low = std::uint32_t(d < 0 ? -d : d) - (1u << k);
      enc.encode(low << (kProbBits - k), 1u << (kProbBits - k));
    }
  }
}

/// Inverse of encode_offset.
inline int decode_offset(RangeDecoder& dec, const DecodeTable& table) {
  const int s = dec.decode(table);
  if (s == 0) return 0;
  const int k = (s - 1) >> 1;
  const int mag = int((1u << k) + (k > 0 ? dec.decode_bits(k) : 0u));
  return (s & 1) ? mag : -mag;
}

}  // namespace kvscope::codec::detail::transform
