#pragma once

// Per-token symmetric uniform quantization (the paper's int8/int4 baseline):
// one fp16 scale per (layer, kind, token) row of kv_heads*head_dim values,
// scale = fp16(absmax / qmax), q = clamp(rint(x / scale), -qmax, qmax),
// x' = q * scale. Shared by the kernels and the CPU reference.
// Bit-exactness needs IEEE division and no FMA contraction on the device
// (the kernels build with --fmad=false and without fast math).

#include <cmath>
#include <cstdint>

#include "kvscope/kernels/detail/fp16_hd.h"
#include "kvscope/kernels/detail/hd.h"

namespace kvscope::kernels::detail {

inline constexpr int kInt8Max = 127;
inline constexpr int kInt4Max = 7;

/// The stored fp16 scale of a row whose largest |x| is `absmax`; finite and
/// >= 0 for any input (NaN rows get scale 0, overflow saturates).
KVSCOPE_HD std::uint16_t symmetric_scale(float absmax, int qmax) {
  if (!(absmax > 0.0f)) return 0;  // zero row or NaN
  std::uint16_t h = float_to_half(absmax / static_cast<float>(qmax));
  if ((h & 0x7c00u) == 0x7c00u) h = 0x7bffu;  // largest finite fp16
  return h;
}

KVSCOPE_HD int quantize_symmetric(float x, float scale, int qmax) {
  if (!(scale > 0.0f)) return 0;
  const float q = rintf(x / scale);
  if (!(q == q)) return 0;  // NaN input
  if (q > static_cast<float>(qmax)) return qmax;
  if (q < -static_cast<float>(qmax)) return -qmax;
  return static_cast<int>(q);
}

KVSCOPE_HD float dequantize_symmetric(int q, float scale) {
  return static_cast<float>(q) * scale;
}

/// |x| ignoring NaN (NaN counts as 0), so a NaN cannot poison a row's scale.
KVSCOPE_HD float abs_or_zero(float x) {
  const float a = fabsf(x);
  return a == a ? a : 0.0f;
}

/// int4 packing: two's-complement nibbles, element 2i in the low nibble.
KVSCOPE_HD std::uint8_t pack_nibbles(int lo, int hi) {
  return static_cast<std::uint8_t>((lo & 0xf) | ((hi & 0xf) << 4));
}
KVSCOPE_HD int unpack_nibble(std::uint8_t byte, int which) {
  const int v = which ? (byte >> 4) : (byte & 0xf);
  return v >= 8 ? v - 16 : v;
}

}  // namespace kvscope::kernels::detail
