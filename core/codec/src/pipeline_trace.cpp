// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/pipeline_trace.h"

#include <cmath>
#include <string>

#include "cachegen_internal.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"

namespace kvscope::codec {

namespace {
// Whether a cachegen stream's codec header says "tables from a calibration".
bool has_profile_tables(const StreamInfo& info, std::span<const std::uint8_t> bytes) {
  const std::size_t end = info.header_bytes - 4;  // the codec header ends before section_count
  return info.codec_header_bytes >= 2 && bytes[end - info.codec_header_bytes + 1] == 1;
}
}  // namespace

PipelineTrace trace_pipeline(const kv::KVCache& cache, const ParamSet& params, int layer, kv::Kind kind,
                             int token, int first_channel, int channel_count) {
  using namespace detail;
  using namespace detail::cachegen;
  const Codec& codec = find_codec("cachegen");
  const auto& sh = cache.shape();
  const Params p("cachegen", codec.params(&sh), cachegen::complete_layer_splits(params, sh.layers));
  const Layout L = encoding_layout(p, cache);
  kv::KVCache pre_rope;
  const kv::KVCache& coded = coding_cache(cache, L, pre_rope);  // keys before RoPE with key_space=pre_rope
  const int C = L.channels;
  if (layer < 0 || layer >= sh.layers)
    throw Error(ErrorCode::InvalidArgument, "pipeline trace: layer " + std::to_string(layer) +
                                                " outside [0, " + std::to_string(sh.layers) + ")");
  if (token < 0 || token >= sh.tokens)
    throw Error(ErrorCode::InvalidArgument, "pipeline trace: token " + std::to_string(token) +
                                                " outside [0, " + std::to_string(sh.tokens) + ")");
  if (first_channel < 0 || channel_count < 1 || first_channel > C - channel_count)
    throw Error(ErrorCode::InvalidArgument, "pipeline trace: channels [" + std::to_string(first_channel) +
                                                ", +" + std::to_string(channel_count) + ") outside [0, " +
                                                std::to_string(C) + ")");
  const int k = int(kind);
  const int M = L.M(layer, k), Ma = L.anchor_M(layer, k);
  const int A = L.anchor_alphabet(layer, k), B = L.delta_alphabet(layer, k);
  const bool float_mode = L.delta_mode == Layout::DeltaMode::Float;

  PipelineTrace tr;
  tr.layer = layer;
  tr.kind = kind;
  tr.token = token;
  tr.bins = L.bins[k][layer];
  tr.M = M;
  tr.group_size = L.group_size;
  tr.scale = to_string(L.scale);
  tr.chunk_begin = (token / L.chunk_tokens) * L.chunk_tokens;
  tr.chunk_tokens = std::min(L.chunk_tokens, sh.tokens - tr.chunk_begin);
  tr.delta_mode = float_mode ? "float" : "integer";
  tr.pre_rope = kind == kv::Kind::Key && L.key_space == Layout::KeySpace::PreRope && cache.info.rope_applied;
  tr.weighted = (L.weighted_kinds >> int(kind) & 1) != 0;
  tr.reconstruction = L.reconstruction;
  tr.sinks = L.sinks;
  tr.anchor_M = Ma;
  const int chunk_sinks = L.sink_tokens(tr.chunk_begin, tr.chunk_tokens);
  tr.sink = token < tr.chunk_begin + chunk_sinks;

  // The encoder's models: counts over every chunk of this (layer, kind), or the profile's.
  ChunkSymbols mine;
  std::vector<std::uint64_t> ac(std::size_t(C) * A), dc(std::size_t(C) * B), rc(std::size_t(C) * A);
  for (int b = 0; b < sh.tokens; b += L.chunk_tokens) {
    ChunkSymbols cs =
        quantize_chunk(coded, layer, kind, b, std::min(L.chunk_tokens, sh.tokens - b), L, &cache);
    count_symbols(cs, L, layer, k, ac, dc);
    count_raw(cs, L, layer, k, rc);
    if (b == tr.chunk_begin) mine = std::move(cs);
  }
  // The tables the encoder uses: its own, a given calibration's, or with
  // "auto" the model's calibration when the encoder finds it smaller (known
  // only from a whole encode, so this case encodes the cache once).
  const std::string setting = p.get("profile");
  bool use_profile = !setting.empty();
  Profile profile;
  if (setting == "auto") {
    if (auto found = find_model_profile(cache.info, L)) {
      const auto stream = codec.encode(cache, params);
      use_profile = has_profile_tables(inspect_stream(stream.bytes, false), stream.bytes);
      profile = std::move(*found);
    } else {
      use_profile = false;
    }
  } else if (use_profile) {
    auto found = file_profile_for(load_profile_file(setting), L, setting);
    use_profile = found.has_value();
    if (found) profile = std::move(*found);
  }
  tr.from_profile = use_profile;

  const std::size_t lk = std::size_t(layer) * 2 + k;
  const int t = token - tr.chunk_begin - chunk_sinks;  // position among the chunk's quantized tokens
  const int n = mine.coded();
  const float* base = coded.tensor(layer, kind).data();
  const float* given = cache.tensor(layer, kind).data();  // sinks are stored as given
  for (int c = first_channel; c < first_channel + channel_count; ++c) {
    const int h = c / sh.head_dim, dim = c % sh.head_dim;
    if (tr.sink) {  // stored as f16: no step, no symbol
      TracedElement e;
      e.channel = c;
      e.sink = true;
      e.original = given[(std::size_t(h) * sh.tokens + token) * sh.head_dim + dim];
      e.reconstructed = half_to_float(float_to_half(e.original));
      e.error = e.reconstructed - e.original;
      e.bits = 16;
      e.anchor_token = token;
      tr.elements.push_back(std::move(e));
      continue;
    }
    std::span<const std::uint64_t> a{ac.data() + std::size_t(c) * A, std::size_t(A)};
    std::span<const std::uint64_t> d{dc.data() + std::size_t(c) * B, std::size_t(B)};
    std::span<const std::uint64_t> rw{rc.data() + std::size_t(c) * A, std::size_t(A)};
    TracedElement e;
    e.channel = c;
    e.raw = use_profile ? profile.raw[lk * C + c] != 0 : choose_raw(L, rw, a, d, true) != 0;
    const int group = e.raw ? 1 : L.group_size;
    e.is_anchor = t % group == 0;
    FreqModel model;
    if (use_profile)
      model = e.is_anchor ? profile.anchor[lk * C + c] : profile.delta[lk * C + c];
    else
      model = table_model(e.raw ? rw : (e.is_anchor ? a : d), L.table_bits);
    e.original = base[(std::size_t(h) * sh.tokens + token) * sh.head_dim + dim];
    if (L.weighted_kinds >> int(kind) & 1) e.channel_scale = L.channel_scale[lk * C + c];
    e.step = half_to_float(mine.steps[std::size_t(L.step_index(c, t))]);
    const int at = t - t % group;
    e.anchor_token = tr.chunk_begin + chunk_sinks + at;
    e.anchor_step = half_to_float(mine.steps[std::size_t(L.step_index(c, at))]);
    if (float_mode) {
      // Anchors: Q on anchor_M; others: Q of the change to the anchor's reconstruction.
      const int sym = mine.sym[std::size_t(c) * n + t];
      e.symbol = sym;
      e.anchor_q = int(mine.sym[std::size_t(c) * n + at]) - Ma;
      e.anchor_reconstructed = float(e.anchor_q) * e.anchor_step;
      e.q = sym - (e.is_anchor ? Ma : M);
      e.level = float(e.q);
      e.delta = e.is_anchor ? 0 : e.q;
      e.prediction = 0;
      e.reconstructed = e.is_anchor ? float(e.q) * e.step : e.anchor_reconstructed + float(e.q) * e.step;
    } else {
      e.q = int(mine.raw[std::size_t(c) * n + t]) - M;
      e.anchor_q = int(mine.raw[std::size_t(c) * n + at]) - M;
      e.anchor_reconstructed = float(e.anchor_q) * e.anchor_step;
      e.prediction =
          e.is_anchor ? e.anchor_q : predict_from_anchor(e.anchor_q, anchor_ratio(e.anchor_step, e.step), M);
      e.delta = e.q - e.prediction;
      e.symbol = e.is_anchor ? e.q + M : e.delta + 2 * M;
      // Version 5 decodes Q to its centroid level, from the channel's anchor
      // model: `model` itself for an anchor (a raw channel's tokens all are).
      FreqModel delta_tokens_anchor;
      if (!e.is_anchor)
        delta_tokens_anchor = use_profile ? profile.anchor[lk * C + c] : table_model(a, L.table_bits);
      e.level = reconstruction_level(e.is_anchor ? model : delta_tokens_anchor, M, L.reconstruction, e.q);
      e.reconstructed = e.level * e.step;
    }
    e.cdf = model.cdf;
    e.freq = e.symbol < model.size() ? model.freq(e.symbol) : 0;
    e.bits = e.freq > 0 ? -std::log2(double(e.freq) / double(kProbTotal)) : INFINITY;
    e.error = e.reconstructed - e.original;
    tr.elements.push_back(std::move(e));
  }
  return tr;
}

}  // namespace kvscope::codec
