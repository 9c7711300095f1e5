// SPDX-License-Identifier: Apache-2.0
#include "transform_kernels.h"

#include <algorithm>

namespace kvscope::codec::detail::transform {

namespace {

// Eight floats; element-wise products and sums only (no reduction), so the
// kernel vectorises without reordering any sum. The AVX2 clone uses separate
// multiply and add instructions: FMA is not enabled.
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));

// Four tokens x 16 columns of `out` in eight named registers while i runs
// over K (named, not an array: GCC keeps an accumulator array in memory).
__attribute__((always_inline)) inline void tile4x16(const float* a, std::size_t lda, int K, const float* m,
                                                    std::size_t ldm, float* out, std::size_t ldo) {
  v8 a00{}, a01{}, a10{}, a11{}, a20{}, a21{}, a30{}, a31{};
  const float* a0 = a;
  const float* a1 = a + lda;
  const float* a2 = a + 2 * lda;
  const float* a3 = a + 3 * lda;
  for (int i = 0; i < K; ++i) {
    const v8 m0 = *reinterpret_cast<const v8*>(m + std::size_t(i) * ldm);
    const v8 m1 = *reinterpret_cast<const v8*>(m + std::size_t(i) * ldm + 8);
    a00 = a00 + a0[i] * m0;
    a01 = a01 + a0[i] * m1;
    a10 = a10 + a1[i] * m0;
    a11 = a11 + a1[i] * m1;
    a20 = a20 + a2[i] * m0;
    a21 = a21 + a2[i] * m1;
    a30 = a30 + a3[i] * m0;
    a31 = a31 + a3[i] * m1;
  }
  const v8 acc[8] = {a00, a01, a10, a11, a20, a21, a30, a31};
  for (int r = 0; r < 4; ++r) {
    *reinterpret_cast<v8*>(out + std::size_t(r) * ldo) = acc[2 * r];
    *reinterpret_cast<v8*>(out + std::size_t(r) * ldo + 8) = acc[2 * r + 1];
  }
}

// One token x 16 columns.
__attribute__((always_inline)) inline void tile1x16(const float* a, int K, const float* m, std::size_t ldm,
                                                    float* out) {
  v8 c0{}, c1{};
  for (int i = 0; i < K; ++i) {
    c0 = c0 + a[i] * *reinterpret_cast<const v8*>(m + std::size_t(i) * ldm);
    c1 = c1 + a[i] * *reinterpret_cast<const v8*>(m + std::size_t(i) * ldm + 8);
  }
  *reinterpret_cast<v8*>(out) = c0;
  *reinterpret_cast<v8*>(out + 8) = c1;
}

// Columns that do not fill a tile of 16, one at a time (same order of sums).
__attribute__((always_inline)) inline void column(const float* a, std::size_t lda, int T, int K,
                                                  const float* m, std::size_t ldm, float* out,
                                                  std::size_t ldo) {
  for (int t = 0; t < T; ++t) {
    float acc = 0.0f;
    for (int i = 0; i < K; ++i) acc = acc + a[std::size_t(t) * lda + i] * m[std::size_t(i) * ldm];
    out[std::size_t(t) * ldo] = acc;
  }
}

__attribute__((target_clones("avx2", "default"))) void matmul_impl(const float* a, std::size_t lda, int T,
                                                                   int K, const float* m, std::size_t ldm,
                                                                   int N, float* out, std::size_t ldo) {
  constexpr int kRows = 4;
  int c0 = 0;
  for (; c0 + 16 <= N; c0 += 16) {
    int t = 0;
    for (; t + kRows <= T; t += kRows)
      tile4x16(a + std::size_t(t) * lda, lda, K, m + c0, ldm, out + std::size_t(t) * ldo + c0, ldo);
    for (; t < T; ++t) tile1x16(a + std::size_t(t) * lda, K, m + c0, ldm, out + std::size_t(t) * ldo + c0);
  }
  for (; c0 < N; ++c0) column(a, lda, T, K, m + c0, ldm, out + c0, ldo);
}

}  // namespace

void matmul_rows(const float* a, std::size_t lda, int T, int K, const float* m, std::size_t ldm, int N,
                 float* out, std::size_t ldo) {
  // Empty products touch no memory (their pointers may be null: offsetting a
  // null pointer is undefined behaviour, found by fuzz_roundtrip).
  if (T <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int t = 0; t < T; ++t)
      for (int n = 0; n < N; ++n) out[std::size_t(t) * ldo + n] = 0.0f;
    return;
  }
  matmul_impl(a, lda, T, K, m, ldm, N, out, ldo);
}

}  // namespace kvscope::codec::detail::transform
