// SPDX-License-Identifier: Apache-2.0
// Host-side tests of the kernels' int8/int4 quantizer: the
// __host__ __device__ math the CUDA kernels run (detail/quant_math.h),
// executed here on the CPU, so CI checks it without a GPU. The cachegen
// decoder and encoder are checked the same way in bitstream_emulation_test.cpp.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kernels/quantize.h"
#include "synthetic_cache.h"

namespace kvscope::kernels {
namespace {

using testing::make_cache;
using testing::Pattern;

TEST(CpuQuantize, Int8AndInt4WithinHalfAStep) {
  const kv::CacheShape shape{2, 3, 33, 5};  // odd channel count: int4 rows pad a nibble
  const auto cache = make_cache(shape, Pattern::Realistic, 5, 2);
  for (int bits : {8, 4}) {
    const QuantizedCache q = cpu_quantize(cache, bits);
    ASSERT_EQ(q.values.size(), q.rows() * q.row_bytes());
    const kv::KVCache back = cpu_dequantize(q);
    for (int lk = 0; lk < shape.layers * 2; ++lk) {
      for (int t = 0; t < shape.tokens; ++t) {
        const float scale = half_to_float(q.scales[static_cast<std::size_t>(lk) * shape.tokens + t]);
        for (int c = 0; c < shape.channels(); ++c) {
          const auto kind = static_cast<kv::Kind>(lk % 2);
          const float x = cache.channel_value(lk / 2, kind, t, c), y = back.channel_value(lk / 2, kind, t, c);
          // Half a step, plus the clip of absmax when its scale rounded down, plus fp16 output rounding.
          ASSERT_LE(std::fabs(x - y), scale * 0.5f + std::fabs(x) * 0.0015f + 1e-6f) << "bits " << bits;
        }
      }
    }
  }
  EXPECT_THROW(cpu_quantize(cache, 5), Error);
  QuantizedCache bad = cpu_quantize(cache, 4);
  bad.values.pop_back();
  EXPECT_THROW(cpu_dequantize(bad), Error);
}

}  // namespace
}  // namespace kvscope::kernels
