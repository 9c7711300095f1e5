// SPDX-License-Identifier: Apache-2.0
#pragma once

// The `transform` codec's projections: a small dense product per token,
// written as a blocked, BLAS-free kernel whose float operations are fixed
// (docs/bitstream.md, "transform": any decoder reproduces them bit for bit).

#include <cstddef>

namespace kvscope::codec::detail::transform {

/// out[t*ldo + c] = sum over i = 0..K-1, in that order, starting from +0.0f,
/// of (a[t*lda + i] * m[i*ldm + c]), for t < T and c < N: every product and
/// every sum rounded to float32 (no fused multiply-add, no reordering).
/// `out` must not alias `a` or `m`.
void matmul_rows(const float* a, std::size_t lda, int T, int K, const float* m, std::size_t ldm, int N,
                 float* out, std::size_t ldo);

}  // namespace kvscope::codec::detail::transform
