#include "transform_kernels.h"

#include <algorithm>

namespace kvscope::codec::detail::transform {

namespace {

// Eight floats; element-wise products and sums only (no reduction), so the
// kernel vectorises without reordering any sum. The AVX2 clone uses separate
// multiply and add instructions: FMA is not enabled.
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));

// R tokens x 16 columns of `out` held in registers while i runs over K.
template <int R>
__attribute__((always_inline)) inline void tile16(const float* a, std::size_t lda, int K, const float* m,
                                                  std::size_t ldm, float* out, std::size_t ldo) {
  v8 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = v8{};
  for (int i = 0; i < K; ++i) {
    const v8 m0 = *reinterpret_cast<const v8*>(m + std::size_t(i) * ldm);
    const v8 m1 = *reinterpret_cast<const v8*>(m + std::size_t(i) * ldm + 8);
    for (int r = 0; r < R; ++r) {
      const float ar = a[std::size_t(r) * lda + i];
      acc[r][0] = acc[r][0] + ar * m0;
      acc[r][1] = acc[r][1] + ar * m1;
    }
  }
  for (int r = 0; r < R; ++r) {
    *reinterpret_cast<v8*>(out + std::size_t(r) * ldo) = acc[r][0];
    *reinterpret_cast<v8*>(out + std::size_t(r) * ldo + 8) = acc[r][1];
  }
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
      tile16<kRows>(a + std::size_t(t) * lda, lda, K, m + c0, ldm, out + std::size_t(t) * ldo + c0, ldo);
    for (; t < T; ++t)
      tile16<1>(a + std::size_t(t) * lda, lda, K, m + c0, ldm, out + std::size_t(t) * ldo + c0, ldo);
  }
  for (; c0 < N; ++c0) column(a, lda, T, K, m + c0, ldm, out + c0, ldo);
}

}  // namespace

void matmul_rows(const float* a, std::size_t lda, int T, int K, const float* m, std::size_t ldm, int N,
                 float* out, std::size_t ldo) {
  matmul_impl(a, lda, T, K, m, ldm, N, out, ldo);
}

}  // namespace kvscope::codec::detail::transform
