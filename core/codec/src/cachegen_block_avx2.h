// SPDX-License-Identifier: Apache-2.0
#pragma once

// AVX2 decoding of one cachegen fast-path block: 8 adjacent channels of one
// KV head over all tokens of a chunk, with the 8 range-decoder lanes held in
// vector registers (the scalar fast path in cachegen_decoder.cpp runs them one
// after the other). Bit-identical to the scalar path; tests compare the two
// on valid and corrupt streams.

#include <cstdint>
#include <span>

#include "entropy.h"

namespace kvscope::codec::detail::cachegen {

/// Each lane's range decoder after its last symbol, for
/// range_stream_end_error(): read position in Block8::streams (reads past the
/// lane's end counted), code, range.
struct LaneEnds {
  std::uint32_t read[8], code[8], range[8];
};

/// One block's inputs.
struct Block8 {
  /// The chunk's streams, back to back, followed by at least 4 readable bytes
  /// (the decoder loads 4 bytes at a time and masks what lies past a lane's end).
  const std::uint8_t* streams = nullptr;
  std::uint32_t begin[8] = {}, end[8] = {};  ///< lane j's stream is streams[begin[j], end[j]), end < 2^30
  const FreqModel* anchor[8] = {};           ///< anchor model per lane
  const FreqModel* delta[8] = {};            ///< delta model per lane (unused for raw lanes)
  bool raw[8] = {};                          ///< lane codes every token as an anchor
  /// Steps: lane j's step at token t is step[base[j] + t * stride]. With
  /// stride != 0 (scale token or head) the 8 lanes share one step per token.
  const float* step = nullptr;
  int base[8] = {};
  int stride = 0;
  int tokens = 0, group_size = 1, M = 0;
  /// Centroid reconstruction (layout version 5): lane j decodes Q = q to
  /// levels[j * (2M + 1) + q + M] * step; null: float(q) * step.
  const float* levels = nullptr;
  float* out = nullptr;  ///< lane j of token t goes to out[t * out_stride + j]
  int out_stride = 0;
  /// When set, receives each lane's decoder state after the last token.
  LaneEnds* ends = nullptr;
};

/// Whether this CPU runs the AVX2 decoder and it is not disabled (by
/// set_simd_decode(false) or the environment variable KVSCOPE_NO_SIMD=1).
bool simd_decode_enabled();
/// Turns the AVX2 decoder off or back on (for tests and benchmarks comparing
/// the two paths); enabling has no effect on a CPU without AVX2.
void set_simd_decode(bool enabled);

/// Decodes the block. Returns false when a decoded value leaves [-M, M] (a
/// corrupt stream), as the scalar path reports. Requires simd_decode_enabled().
bool decode_block_avx2(const Block8& b);

}  // namespace kvscope::codec::detail::cachegen
