// SPDX-License-Identifier: Apache-2.0
#pragma once

// Per-token symmetric uniform quantization (the paper's int8/int4 baseline),
// exactly as core/codec's int8/int4 codecs (codec_int.cpp) do it: one fp16
// scale per (layer, kind, token) row of kv_heads*head_dim values,
// scale = absmax / qmax rounded *up* to fp16 (so no value clips),
// q = clamp(rint(x / scale), -qmax, qmax), x' = q * scale. Shared by the
// kernels and the CPU reference.
// Bit-exactness needs IEEE division and no FMA contraction on the device
// (the kernels build with --fmad=false and without fast math).

#include <cmath>
#include <cstdint>

#include "kvscope/kernels/detail/fp16_hd.h"
#include "kvscope/kernels/detail/hd.h"

namespace kvscope::kernels::detail {

inline constexpr int kInt8Max = 127;
inline constexpr int kInt4Max = 7;

/// The stored fp16 scale of a row whose largest |x| is `absmax`: the
/// smallest fp16 >= absmax / qmax (core/codec's half_scale_up). Returns
/// 0xffff (an invalid scale: callers report an error) when that is not a
/// finite fp16 or the input is NaN/infinite, where the codec throws.
KVSCOPE_HD std::uint16_t symmetric_scale(float absmax, int qmax) {
  const float value = absmax / static_cast<float>(qmax);
  if (!(value >= 0.0f) || !(value <= 3.4e38f)) return 0xffffu;
  std::uint16_t h = float_to_half(value);
  if (half_to_float(h) < value) ++h;
  if (h >= 0x7c00u) return 0xffffu;
  return h;
}
inline constexpr std::uint16_t kInvalidScale = 0xffffu;

KVSCOPE_HD int quantize_symmetric(float x, float scale, int qmax) {
  if (!(scale > 0.0f)) return 0;
  const float q = rintf(x / scale);
  if (!(q == q)) return 0;  // NaN input (the row's scale is invalid anyway)
  if (q > static_cast<float>(qmax)) return qmax;
  if (q < -static_cast<float>(qmax)) return -qmax;
  return static_cast<int>(q);
}

KVSCOPE_HD float dequantize_symmetric(int q, float scale) {
  return static_cast<float>(q) * scale;
}

/// |x|, NaN kept (a NaN row gets an invalid scale, as the codec rejects NaN).
KVSCOPE_HD float abs_value(float x) {
  return fabsf(x);
}
/// max that propagates NaN, so one NaN makes the row's scale invalid.
KVSCOPE_HD float max_nan(float a, float b) {
  return (a != a || b != b) ? a + b : (a > b ? a : b);
}

/// int4 packing as core/codec: q + 8 in nibbles, element 2i in the low nibble.
KVSCOPE_HD std::uint8_t pack_nibbles(int lo, int hi) {
  return static_cast<std::uint8_t>(((lo + 8) & 0xf) | (((hi + 8) & 0xf) << 4));
}
KVSCOPE_HD int unpack_nibble(std::uint8_t byte, int which) {
  return static_cast<int>(which ? (byte >> 4) : (byte & 0xf)) - 8;
}

}  // namespace kvscope::kernels::detail
