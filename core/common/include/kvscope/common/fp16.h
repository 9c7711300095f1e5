// SPDX-License-Identifier: Apache-2.0
#pragma once

// Compiles for the host and, under nvcc, for the device too: the CUDA kernels
// (kernels/) use these very functions, so GPU-written fp16 equals the CPU's.

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define KVSCOPE_FP16_HD __host__ __device__ __forceinline__
#else
#define KVSCOPE_FP16_HD inline
#endif

namespace kvscope {

/// The bits of a float and back (std::bit_cast is not available in device code).
KVSCOPE_FP16_HD std::uint32_t float_bits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
#endif
}

KVSCOPE_FP16_HD float bits_float(std::uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

/// IEEE 754 binary16 <-> binary32 conversion, bit-exact and portable (no
/// compiler extensions), so every front end and the CUDA kernels agree.
/// float_to_half rounds to nearest, ties to even; NaN stays NaN, overflow
/// becomes infinity.
KVSCOPE_FP16_HD std::uint16_t float_to_half(float value) {
  const std::uint32_t bits = float_bits(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs >= 0x38800000u) {                                                   // normal half
    std::uint32_t mant = abs + 0xc8000fffu + ((abs >> 13) & 1u);              // rebias + round-half-even
    return static_cast<std::uint16_t>(sign | (mant >> 13));
  }
  if (abs < 0x33000001u) return static_cast<std::uint16_t>(sign);  // underflows to zero
  // Subnormal half: shift the full mantissa, round to nearest even.
  const std::uint32_t exp = abs >> 23;
  const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - exp;  // 14..24
  std::uint32_t half = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
  return static_cast<std::uint16_t>(sign | half);
}

KVSCOPE_FP16_HD float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  return bits_float(bits);
}

/// Rounds a float to the nearest fp16-representable value.
KVSCOPE_FP16_HD float round_to_half(float value) {
  return half_to_float(float_to_half(value));
}

/// bfloat16 -> float (exact).
KVSCOPE_FP16_HD float bf16_to_float(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

}  // namespace kvscope
