// SPDX-License-Identifier: Apache-2.0
#pragma once

// cachegen's anchor prediction (docs/bitstream.md, "cachegen"): a delta
// token's Q is coded against the group anchor's Q re-expressed in the token's
// step. One definition for the CPU codec and the CUDA kernels, so both run
// exactly the same float operations (the kernels build without FMA
// contraction or fast math). Plain C++ unless nvcc compiles it.

#if defined(__CUDACC__)
#define KVSCOPE_CODEC_HD __host__ __device__ __forceinline__
#else
#define KVSCOPE_CODEC_HD inline
#endif

namespace kvscope::codec::detail {

/// step_anchor / step_token in float; 1 when the steps are equal (so that
/// scale=channel predicts Q_anchor exactly); 0 when step_token is 0 (then
/// every Q of the token is 0).
KVSCOPE_CODEC_HD float anchor_ratio(float step_anchor, float step_token) {
  return step_token > 0.0f ? (step_anchor == step_token ? 1.0f : step_anchor / step_token) : 0.0f;
}

/// clamp(round_half_even(float(q_anchor) * ratio), -M, M): one float product,
/// the clamp, then rounding by adding and subtracting 1.5 * 2^23 (exact
/// half-to-even for |x| <= M < 2^22, and vectorisable, unlike a libm call).
KVSCOPE_CODEC_HD int predict_from_anchor(int q_anchor, float ratio, int M) {
  const float kRound = 12582912.0f;
  float x = float(q_anchor) * ratio;
  x = x < -float(M) ? -float(M) : (x > float(M) ? float(M) : x);
  return int((x + kRound) - kRound);
}

}  // namespace kvscope::codec::detail
