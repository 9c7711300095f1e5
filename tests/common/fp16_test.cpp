// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/fp16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace kvscope {
namespace {

TEST(Fp16, EveryHalfRoundTripsExactly) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f))));
      continue;
    }
    EXPECT_EQ(float_to_half(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(1e6f), 0x7C00);
  EXPECT_EQ(float_to_half(5.9604645e-8f), 0x0001);  // smallest subnormal
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
}

TEST(Fp16, RoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 and 1+2^-9: ties to even (1+2^-9).
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // Just above halfway rounds up.
  EXPECT_EQ(float_to_half(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
}

TEST(Fp16, PicksTheNearestNeighbour) {
  // Within the finite range, no adjacent half may be closer than the chosen one.
  for (float x = -65000.f; x < 65000.f; x += 13.37f) {
    const std::uint16_t h = float_to_half(x);
    const float err = std::fabs(half_to_float(h) - x);
    for (int step : {-1, 1}) {
      const float neighbour = half_to_float(static_cast<std::uint16_t>(h + step));
      if (std::isfinite(neighbour) && std::signbit(neighbour) == std::signbit(x)) {
        EXPECT_LE(err, std::fabs(neighbour - x)) << x;
      }
    }
  }
}

TEST(Bf16, Converts) { EXPECT_EQ(bf16_to_float(0x3F80), 1.0f); }

}  // namespace
}  // namespace kvscope
