// SPDX-License-Identifier: Apache-2.0
#pragma once

// One token's values through cachegen, element by element, for the GUI's
// pipeline (teaching) view: original value -> bin step (per token, head or
// channel, the `scale` parameter) ->
// quantized Q -> anchor or delta symbol -> the probability the range coder
// gives that symbol (its cost, -log2 p) -> the decoded value and its error.
// Computed with the same quantizer, symbol mapping, raw/delta choice and
// symbol models as the cachegen encoder (core/codec/src/cachegen_encoder.cpp).

#include <cstdint>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"

namespace kvscope::codec {

/// One channel of the traced token.
struct TracedElement {
  int channel = 0;        ///< flat channel kv_head * head_dim + dim
  float original = 0;     ///< the cache value
  float step = 0;         ///< bin step of this element (fp16, >= 0): the token's, head's or channel's
  float anchor_step = 0;  ///< bin step of the anchor token's element (= step for anchors)
  bool sink = false;      ///< an attention sink stored as f16 (no step, no symbol; bits = 16)
  /// Integer deltas: the quantized value round(original / step) in [-M, M];
  /// float deltas: for anchors round(original / step) in [-anchor_M, anchor_M],
  /// for the others the quantized change round((original - anchor_reconstructed) / step).
  int q = 0;
  bool raw = false;      ///< the channel codes every token as an anchor (delta=never, or auto chose it)
  int anchor_token = 0;  ///< token whose Q this one is coded against (itself for anchors)
  int anchor_q = 0;      ///< that token's Q
  float anchor_reconstructed = 0;  ///< that token's decoded value (what float deltas are taken against)
  bool is_anchor = false;          ///< coded with the anchor model (symbol = Q + M)
  /// Integer deltas: anchor_q re-expressed in this step, round(anchor_q *
  /// anchor_step / step); 0 with float deltas.
  int prediction = 0;
  int delta = 0;   ///< integer: q - prediction; float: q (the quantized change); 0 for anchors
  int symbol = 0;  ///< coded symbol: Q + M_a (anchor); delta + 2M (integer delta); q + M (float delta)
  std::uint32_t freq = 0;  ///< its frequency in the 16-bit model (out of 65536)
  double bits = 0;         ///< -log2(freq / 65536): what the range coder spends on it
  /// The model the coder uses for this element: cdf[s]..cdf[s+1] is symbol s's
  /// share of 65536 (alphabet 2M+1 for anchors, 4M+1 for deltas).
  std::vector<std::uint32_t> cdf;
  /// What the decoder multiplies this channel's decoded value by (1 unless
  /// the trace is weighted).
  float channel_scale = 1.0f;
  /// What q is decoded to in steps: q itself, or with centroid
  /// reconstruction (layout version 5) q moved toward its likelier neighbour
  /// (docs/bitstream.md, cachegen "Version 5"); q with float deltas.
  float level = 0;
  float reconstructed = 0;  ///< level * step, what decode() returns
  float error = 0;          ///< reconstructed - original
};

struct PipelineTrace {
  int layer = 0;
  kv::Kind kind = kv::Kind::Key;
  int token = 0;
  int bins = 0;               ///< the layer group's bins for this kind
  int M = 0;                  ///< bins / 2 - 1: Q lies in [-M, M]
  int group_size = 0;         ///< tokens per anchor group
  std::string scale;          ///< what a step covers: "token", "head" or "channel"
  int chunk_begin = 0;        ///< first token of the token's chunk
  int chunk_tokens = 0;       ///< tokens in that chunk
  bool from_profile = false;  ///< models come from a calibration profile, not from this cache
  std::string delta_mode;     ///< "integer" or "float" (the delta_mode parameter)
  int anchor_M = 0;           ///< M of anchor symbols (= M with integer deltas)
  int sinks = 0;              ///< tokens of the cache stored exactly (the sinks parameter)
  bool sink = false;          ///< the traced token is one of them
  /// Keys coded before RoPE (key_space=pre_rope): original, step, Q and
  /// reconstructed values are in that space (the decoder re-applies RoPE).
  bool pre_rope = false;
  /// Calibrated channel weighting (channel_weighting=calibrated with a
  /// weighting found; docs/bitstream.md cachegen "Version 4"): original,
  /// step, Q and reconstructed values are of the value divided by the
  /// element's channel_scale, which the decoder multiplies back.
  bool weighted = false;
  /// The reconstruction parameter in effect (0: values decode to q * step;
  /// > 0: to each element's centroid level times step, layout version 5).
  float reconstruction = 0;
  std::vector<TracedElement> elements;  ///< channels [first, first + count)
};

/// Traces `token` of (`layer`, `kind`) for channels [first_channel,
/// first_channel + channel_count) through cachegen with `params` (validated
/// as encode() does). Models are built from the whole (layer, kind) exactly
/// as the encoder builds them (or taken from the `profile` parameter's file).
/// Errors: Error(InvalidArgument) for a bad parameter, a layer, token or
/// channel range outside the cache, or non-finite values.
PipelineTrace trace_pipeline(const kv::KVCache& cache, const ParamSet& params, int layer, kv::Kind kind,
                             int token, int first_channel, int channel_count);

}  // namespace kvscope::codec
