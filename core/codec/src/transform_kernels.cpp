#include "transform_kernels.h"

#include <algorithm>

namespace kvscope::codec::detail::transform {

namespace {

// Four tokens at a time share each row of `m`; columns in tiles that keep
// the accumulators in L1. The inner loop is element-wise (no reduction), so
// the compiler vectorises it without reassociating anything; the AVX2 clone
// uses separate multiply and add instructions (no FMA is enabled).
constexpr int kTokens = 4;
constexpr int kTile = 256;

template <int R>
inline void block(const float* a, std::size_t lda, int K, const float* m, std::size_t ldm, int c0, int w,
                  float* out, std::size_t ldo) {
  float acc[R][kTile];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < w; ++c) acc[r][c] = 0.0f;
  for (int i = 0; i < K; ++i) {
    const float* mi = m + std::size_t(i) * ldm + c0;
    for (int r = 0; r < R; ++r) {
      const float ar = a[std::size_t(r) * lda + i];
      float* ac = acc[r];
      for (int c = 0; c < w; ++c) ac[c] = ac[c] + ar * mi[c];
    }
  }
  for (int r = 0; r < R; ++r) std::copy(acc[r], acc[r] + w, out + std::size_t(r) * ldo + c0);
}

__attribute__((target_clones("avx2", "default"))) void matmul_impl(const float* a, std::size_t lda, int T,
                                                                   int K, const float* m, std::size_t ldm,
                                                                   int N, float* out, std::size_t ldo) {
  for (int c0 = 0; c0 < N; c0 += kTile) {
    const int w = std::min(kTile, N - c0);
    int t = 0;
    for (; t + kTokens <= T; t += kTokens)
      block<kTokens>(a + std::size_t(t) * lda, lda, K, m, ldm, c0, w, out + std::size_t(t) * ldo, ldo);
    for (; t < T; ++t)
      block<1>(a + std::size_t(t) * lda, lda, K, m, ldm, c0, w, out + std::size_t(t) * ldo, ldo);
  }
}

}  // namespace

void matmul_rows(const float* a, std::size_t lda, int T, int K, const float* m, std::size_t ldm, int N,
                 float* out, std::size_t ldo) {
  matmul_impl(a, lda, T, K, m, ldm, N, out, ldo);
}

}  // namespace kvscope::codec::detail::transform
