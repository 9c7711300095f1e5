// SPDX-License-Identifier: Apache-2.0
// cachegen's decoders (docs/bitstream.md, "cachegen"): the header and
// Table parsing for layout versions 1-3, and the chunk decoder: sinks and
// steps, then integer-mode streams in lanes of 8 channels (the AVX2 block
// decoder, else a scalar fast path, else a general path) or float-mode
// streams channel by channel.
#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

#include "cachegen_block_avx2.h"
#include "cachegen_codec.h"
#include "cachegen_internal.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kv/rope.h"

namespace kvscope::codec::detail::cachegen {

namespace {

// Models of one (layer, kind): anchor and delta per channel.
struct LayerModels {
  std::vector<FreqModel> anchor, delta;
  std::vector<std::uint8_t> raw;
  /// Centroid reconstruction (layout version 5): channel c decodes Q = q to
  /// levels[c * (2M + 1) + q + M] * step (reconstruction_levels() of its
  /// anchor model, derived once per decoder, not per chunk); else empty.
  std::vector<float> levels;
};

// key_space=pre_rope: the rotations that put RoPE back on a chunk's decoded
// keys (its quantized tokens; sinks are stored as given), one per (frequency
// table, chunk), shared by the layers with equal tables.
struct RopeRestore {
  std::vector<int> layer_table;                       // layer -> table index
  std::vector<std::vector<kv::RopeRotation>> chunks;  // [table][chunk]
};

class CachegenDecoder : public ChunkDecoder {
 public:
  CachegenDecoder(Layout layout, std::vector<LayerModels> models, std::optional<RopeRestore> rope)
      : layout_(std::move(layout)), models_(std::move(models)), rope_(std::move(rope)) {}

  void decode(const SectionInfo& s, std::span<const std::uint8_t> payload,
              const TensorOut& chunk_out) const override {
    decode_values(s, payload, chunk_out);
    const int sinks = layout_.sink_tokens(s.token_begin, s.token_count), n = s.token_count - sinks;
    if (layout_.weighted_kinds >> int(s.kv) & 1) unscale(s, chunk_out, sinks, n);
    if (!rope_ || s.kv != kv::Kind::Key) return;
    const auto& rotation = rope_->chunks[std::size_t(rope_->layer_table[s.layer])]
                                        [std::size_t(s.token_begin / layout_.chunk_tokens)];
    const int D = chunk_out.head_dim;
    for (int h = 0; h < chunk_out.kv_heads; ++h)
      rotation.apply(
          {chunk_out.data + (std::size_t(h) * chunk_out.tokens + chunk_out.token_offset + sinks) * D,
           std::size_t(n) * D},
          1);
  }

 private:
  // Channel weighting: the coded values were divided by their channel's
  // scale (sinks are stored as given).
  void unscale(const SectionInfo& s, const TensorOut& out, int sinks, int n) const {
    const int D = out.head_dim;
    const float* scale =
        layout_.channel_scale.data() + (std::size_t(s.layer) * 2 + int(s.kv)) * layout_.channels;
    for (int h = 0; h < out.kv_heads; ++h)
      for (int t = 0; t < n; ++t) {
        float* row = out.data + (std::size_t(h) * out.tokens + out.token_offset + sinks + t) * D;
        const float* sc = scale + h * D;
        for (int d = 0; d < D; ++d) row[d] *= sc[d];
      }
  }

  void decode_values(const SectionInfo& s, std::span<const std::uint8_t> payload,
                     const TensorOut& chunk_out) const {
    const int C = layout_.channels, D = chunk_out.head_dim;
    const int sinks = layout_.sink_tokens(s.token_begin, s.token_count);
    const int n = s.token_count - sinks;  // quantized tokens, after the sinks
    const int M = layout_.M(s.layer, int(s.kv));
    const auto& lm = models_[std::size_t(s.layer) * 2 + int(s.kv)];
    if (n > 0 && lm.anchor.empty())
      throw Error(ErrorCode::Format, "cachegen: the table of this layer is missing or empty");
    ByteReader r(payload, "cachegen chunk (layer " + std::to_string(s.layer) + ")");
    read_sinks(r, sinks, chunk_out);
    TensorOut out = chunk_out;
    out.token_offset += sinks;
    std::vector<float> step(std::size_t(layout_.step_count(n)));
    read_steps(r, step, layout_);
    const int S = layout_.step_stride(), G = layout_.group_size;
    std::vector<std::size_t> len(C);
    std::size_t total = 0;
    for (int c = 0; c < C; ++c) {
      const std::uint64_t v = r.varint();
      if (v > r.remaining()) r.fail("stream length exceeds the section");
      len[c] = std::size_t(v);
      total += len[c];
      if (total > r.remaining()) r.fail("stream lengths exceed the section");
    }
    if (total != r.remaining()) r.fail("stream lengths do not add up to the section size");
    auto streams = r.bytes(total);
    // A chunk of sinks only codes no symbol: its streams are empty (section 2,
    // "End of a stream": a stream of no symbols is zero bytes).
    if (n == 0) {
      if (total != 0) r.fail("a chunk without quantized tokens has non-empty streams");
      return;
    }
    // After its tokens every stream must end exactly as the encoder ends one
    // (docs/bitstream.md section 2, "End of a stream").
    auto require_end = [&](const char* error, int c) {
      if (error) r.fail("the stream of channel " + std::to_string(c) + " " + error);
    };
    if (layout_.delta_mode == Layout::DeltaMode::Float) {
      decode_float(s, streams, len, step, out, require_end);
      return;
    }
    std::size_t off = 0;
    // Channels decode in lanes of 8 independent streams, token by token, so
    // the divisions of different streams overlap in the CPU. The anchor/delta
    // choice is a table select, not a branch; a last partial block pads its
    // unused lanes with empty streams writing into a scratch row.
    constexpr int kLanes = 8;
    DecodeTable at[kLanes], dt[kLanes];
    RangeDecoder rd[kLanes];
    const DecodeTable* tab[kLanes][2];
    int group[kLanes], phase[kLanes], sbase[kLanes], anchor_q[kLanes];
    float anchor_s[kLanes];
    float* dst[kLanes];
    std::size_t stride[kLanes];
    std::vector<float> scratch;
    const int lo = -M, hi = M;
    // The AVX2 decoder reads 4 bytes at a time: give it a padded copy.
    const bool simd = D % kLanes == 0 && total < (std::size_t(1) << 30) && simd_decode_enabled();
    thread_local std::vector<std::uint8_t> padded;
    if (simd) {
      padded.assign(streams.begin(), streams.end());
      padded.resize(total + 4, 0);
    }
    // Centroid reconstruction (version 5): channel c decodes Q = q to
    // lm.levels[c * A + q + M] * step instead of float(q) * step.
    const std::size_t A = std::size_t(2 * M + 1);
    const float* levels = lm.levels.empty() ? nullptr : lm.levels.data();
    auto level = [&](int c, int q) {
      return levels ? levels[std::size_t(c) * A + std::size_t(std::clamp(q, lo, hi) + M)] : float(q);
    };
    for (int c0 = 0; c0 < C; c0 += kLanes) {
      const int nb = std::min(kLanes, C - c0);
      if (simd && nb == kLanes) {
        Block8 blk;
        blk.levels = levels ? levels + std::size_t(c0) * A : nullptr;
        blk.streams = padded.data();
        for (int j = 0; j < kLanes; ++j) {
          const int c = c0 + j;
          blk.raw[j] = lm.raw[c] != 0;
          const bool need_delta = n > 1 && !blk.raw[j] && layout_.group_size > 1;
          if (lm.anchor[c].empty() || (need_delta && lm.delta[c].empty()))
            r.fail("chunk needs a model that is empty");
          blk.anchor[j] = &lm.anchor[c];
          blk.delta[j] = &lm.delta[c];
          blk.begin[j] = std::uint32_t(off);
          off += len[c];
          blk.end[j] = std::uint32_t(off);
          blk.base[j] = layout_.step_base(c);
        }
        blk.step = step.data();
        blk.stride = S;
        blk.tokens = n;
        blk.group_size = G;
        blk.M = M;
        blk.out = out.data + (std::size_t(c0 / D) * out.tokens + out.token_offset) * D + c0 % D;
        blk.out_stride = D;
        LaneEnds ends;
        blk.ends = &ends;
        if (!decode_block_avx2(blk)) r.fail("decoded value out of range (corrupt stream)");
        for (int j = 0; j < kLanes; ++j)
          require_end(range_stream_end_error(streams.subspan(blk.begin[j], blk.end[j] - blk.begin[j]),
                                             ends.read[j] - blk.begin[j], ends.code[j], ends.range[j]),
                      c0 + j);
        continue;
      }
      for (int j = 0; j < kLanes; ++j) {
        if (j >= nb) {  // padding lane: an anchor-only empty stream
          if (scratch.empty()) scratch.assign(std::size_t(n), 0.0f);
          rd[j] = RangeDecoder(std::span<const std::uint8_t>());
          tab[j][0] = tab[j][1] = &at[0];
          group[j] = 1;
          dst[j] = scratch.data();
          stride[j] = 1;
          sbase[j] = 0;
          phase[j] = 0;
          anchor_q[j] = 0;
          anchor_s[j] = 0.0f;
          continue;
        }
        const int c = c0 + j;
        const FreqModel& am = lm.anchor[c];
        const FreqModel& dm = lm.delta[c];
        group[j] = lm.raw[c] != 0 ? 1 : layout_.group_size;
        const bool need_delta = n > 1 && group[j] > 1;
        if (am.empty() || (need_delta && dm.empty())) r.fail("chunk needs a model that is empty");
        at[j].build(am);
        if (need_delta) dt[j].build(dm);
        tab[j][0] = &at[j];
        tab[j][1] = need_delta ? &dt[j] : &at[j];
        rd[j] = RangeDecoder(streams.subspan(off, len[c]));
        off += len[c];
        dst[j] = out.data + (std::size_t(c / D) * out.tokens + out.token_offset) * D + c % D;
        stride[j] = std::size_t(D);
        sbase[j] = layout_.step_base(c);
        phase[j] = 0;
        anchor_q[j] = 0;
        anchor_s[j] = 0.0f;
      }
      bool bad = false;
      auto step_at = [&](int j, int t) { return step[std::size_t(sbase[j] + t * S)]; };
      if (nb == kLanes && D % kLanes == 0) {
        // Fast path: the block's 8 channels are adjacent in one head, so a
        // token's 8 values are one contiguous run; tokens go group by group
        // (anchor row, then delta rows), so no per-symbol phase bookkeeping.
        // Raw channels decode every row with the anchor table (prediction
        // -M, i.e. q = s - M).
        // With scale=token or head the 8 channels share each token's step
        // (one head), so the step and the anchor ratio are per token; with
        // scale=channel each lane keeps its step and the prediction is Q_a.
        float* row = dst[0];
        const bool shared = S != 0;
        int qa[kLanes], qv[kLanes], pbase[kLanes];
        float cstep[kLanes];
        for (int j = 0; j < kLanes; ++j) cstep[j] = step_at(j, 0);
        for (int t0 = 0; t0 < n; t0 += G) {
          const float sa = shared ? step_at(0, t0) : 0.0f;
          for (int j = 0; j < kLanes; ++j) qa[j] = rd[j].decode(at[j]) - M;
          for (int j = 0; j < kLanes; ++j) row[j] = level(c0 + j, qa[j]) * (shared ? sa : cstep[j]);
          row += D;
          const int tend = std::min(t0 + G, n);
          for (int t = t0 + 1; t < tend; ++t) {
            const float st = shared ? step_at(0, t) : 0.0f;
            const float ratio = shared ? anchor_ratio(sa, st) : 1.0f;
            for (int j = 0; j < kLanes; ++j)
              pbase[j] = group[j] == 1 ? -M : predict_from_anchor(qa[j], ratio, M) - 2 * M;
            for (int j = 0; j < kLanes; ++j) {
              const int q = pbase[j] + rd[j].decode(*tab[j][1]);
              bad |= (q < lo) | (q > hi);
              qv[j] = q;
            }
            for (int j = 0; j < kLanes; ++j) row[j] = level(c0 + j, qv[j]) * (shared ? st : cstep[j]);
            row += D;
          }
        }
        if (bad) r.fail("decoded value out of range (corrupt stream)");
        for (int j = 0; j < kLanes; ++j) require_end(rd[j].end_error(), c0 + j);
        continue;
      }
      for (int t = 0; t < n; ++t) {
        for (int j = 0; j < kLanes; ++j) {
          // Anchor: q = s - M; a delta token: q = prediction + s - 2M.
          const int is_delta = phase[j] != 0;
          const float st = j < nb ? step_at(j, t) : 0.0f;
          const int pred =
              is_delta ? predict_from_anchor(anchor_q[j], anchor_ratio(anchor_s[j], st), M) - 2 * M : -M;
          const int q = pred + rd[j].decode(*tab[j][is_delta]);
          bad |= (q < lo) | (q > hi);
          if (!is_delta) {
            anchor_q[j] = q;
            anchor_s[j] = st;
          }
          const int next = phase[j] + 1;
          phase[j] = next == group[j] ? 0 : next;
          dst[j][std::size_t(t) * stride[j]] = (j < nb ? level(c0 + j, q) : float(q)) * st;
        }
      }
      if (bad) r.fail("decoded value out of range (corrupt stream)");
      for (int j = 0; j < nb; ++j) require_end(rd[j].end_error(), c0 + j);
    }
  }

  // The chunk's first `sinks` tokens: f16 values, [head][token][dim].
  void read_sinks(ByteReader& r, int sinks, const TensorOut& out) const {
    for (int h = 0; h < out.kv_heads; ++h)
      for (int t = 0; t < sinks; ++t) {
        float* row = out.data + (std::size_t(h) * out.tokens + out.token_offset + t) * out.head_dim;
        for (int d = 0; d < out.head_dim; ++d) {
          row[d] = half_to_float(r.u16());
          if (!std::isfinite(row[d])) r.fail("invalid sink value");
        }
      }
  }

  // Float deltas (the paper's change-based coding), one channel after the
  // other: x' = Q_a * step for anchors, x'_anchor + Q * step for the others
  // (two float operations, the product rounded first).
  void decode_float(const SectionInfo& s, std::span<const std::uint8_t> streams,
                    const std::vector<std::size_t>& len, const std::vector<float>& step, const TensorOut& out,
                    const std::function<void(const char*, int)>& require_end) const {
    const int n = s.token_count - layout_.sink_tokens(s.token_begin, s.token_count);
    const int M = layout_.M(s.layer, int(s.kv)), Ma = layout_.anchor_M(s.layer, int(s.kv));
    const int D = out.head_dim, G = layout_.group_size;
    const auto& lm = models_[std::size_t(s.layer) * 2 + int(s.kv)];
    DecodeTable at, dt;
    std::size_t off = 0;
    for (int c = 0; c < layout_.channels; ++c) {
      const bool need_delta = n > 1 && G > 1;
      if (lm.anchor[c].empty() || (need_delta && lm.delta[c].empty()))
        throw Error(ErrorCode::Format, "cachegen chunk (layer " + std::to_string(s.layer) +
                                           "): chunk needs a model that is empty");
      at.build(lm.anchor[c]);
      if (need_delta) dt.build(lm.delta[c]);
      RangeDecoder rd(streams.subspan(off, len[c]));
      off += len[c];
      float* dst = out.data + (std::size_t(c / D) * out.tokens + out.token_offset) * D + c % D;
      const int base = layout_.step_base(c), stride = layout_.step_stride();
      float anchor = 0.0f;
      for (int t = 0; t < n; ++t) {
        const float st = step[std::size_t(base + t * stride)];
        float x;
        if (t % G == 0) {
          anchor = float(rd.decode(at) - Ma) * st;
          x = anchor;
        } else {
          const float change = float(rd.decode(dt) - M) * st;
          x = anchor + change;
        }
        dst[std::size_t(t) * D] = x;
      }
      require_end(rd.end_error(), c);
    }
  }

  Layout layout_;
  std::vector<LayerModels> models_;
  std::optional<RopeRestore> rope_;
};

// The rotations of every chunk's quantized keys, from the header's RoPE
// tables (or plain RoPE from rope_theta) and positions.
RopeRestore rope_restore(const StreamHeader& header, const Layout& L) {
  const auto& info = header.info.info;
  const auto& sh = header.info.shape;
  std::vector<std::int32_t> positions = info.positions;
  if (int(positions.size()) != sh.tokens) {
    positions.resize(std::size_t(sh.tokens));
    for (int t = 0; t < sh.tokens; ++t) positions[std::size_t(t)] = t;
  }
  RopeRestore r;
  std::vector<std::vector<double>> tables;
  try {
    for (int l = 0; l < sh.layers; ++l) {
      auto f = kv::layer_rope_inv_freq(info, sh.layers, l, sh.head_dim);
      if (int(f.size()) * 2 != sh.head_dim)
        throw Error(ErrorCode::InvalidArgument, "RoPE needs head_dim/2 frequencies per layer");
      auto it = std::find(tables.begin(), tables.end(), f);
      r.layer_table.push_back(int(it - tables.begin()));
      if (it == tables.end()) tables.push_back(std::move(f));
    }
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument) throw;
    throw Error(ErrorCode::Format, std::string("bitstream: cachegen key_space=pre_rope: ") + e.what());
  }
  for (const auto& f : tables) {
    auto& per_chunk = r.chunks.emplace_back();
    for (int b = 0; b < sh.tokens; b += L.chunk_tokens) {
      const int count = std::min(L.chunk_tokens, sh.tokens - b), sinks = L.sink_tokens(b, count);
      per_chunk.emplace_back(f, std::span<const std::int32_t>(positions).subspan(std::size_t(b + sinks),
                                                                                 std::size_t(count - sinks)));
    }
  }
  return r;
}

}  // namespace

// A version 1 or 2 stream has no version 3 parameter and decodes with their
// version 2 meaning; a version 3 stream must carry every one (so later
// default changes never reinterpret it).
Params stream_layout_params(const Codec& codec, const StreamInfo& info) {
  ParamSet given = info.params;
  for (const auto& v3 : kV3Params) {
    const bool has = given.count(v3.name) != 0;
    if (info.codec_version < kLayoutVersion) {
      if (has)
        throw Error(ErrorCode::Format, std::string("bitstream: a cachegen layout version ") +
                                           std::to_string(info.codec_version) + " stream with parameter '" +
                                           v3.name + "'");
      given[v3.name] = v3.neutral;
    } else if (!has) {
      throw Error(
          ErrorCode::Format,
          std::string("bitstream: cachegen layout version 3 stream without parameter '") + v3.name + "'");
    }
  }
  const std::uint16_t version = info.codec_version;
  auto refuse = [&](const std::string& what) {
    throw Error(ErrorCode::Format,
                "bitstream: cachegen layout version " + std::to_string(version) + " stream " + what);
  };
  // Version 4 streams say channel_weighting=calibrated, version 5 streams
  // when they are weighted; earlier ones had none.
  const auto cw = given.find("channel_weighting");
  if (cw != given.end() && cw->second != "calibrated") refuse("with channel_weighting=" + cw->second);
  if (version == kLayoutVersionWeighted && cw == given.end()) refuse("without channel_weighting=calibrated");
  if (version < kLayoutVersionWeighted && cw != given.end()) refuse("with parameter 'channel_weighting'");
  if (cw == given.end()) given["channel_weighting"] = "off";
  // Version 5 streams carry reconstruction > 0; earlier ones decode to midpoints.
  const auto rc = given.find("reconstruction");
  if (version < kLayoutVersionCentroid) {
    if (rc != given.end()) refuse("with parameter 'reconstruction'");
    given["reconstruction"] = "0";
  } else if (rc == given.end()) {
    refuse("without parameter 'reconstruction'");
  }
  try {
    Params p(codec.name(), codec.params(&info.shape), given);
    if (version >= kLayoutVersionCentroid &&
        (p.get_float("reconstruction") <= 0.0 || p.get("delta_mode") != "integer"))
      refuse("with reconstruction " + p.get("reconstruction") + " and delta_mode " + p.get("delta_mode"));
    return p;
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument) throw;
    throw Error(ErrorCode::Format, std::string("bitstream: ") + e.what());
  }
}

std::unique_ptr<ChunkDecoder> make_cachegen_decoder(const Codec& codec, const StreamHeader& header,
                                                    const std::vector<std::span<const std::uint8_t>>& tables,
                                                    const DecodeOptions& options) {
  const Params p = stream_layout_params(codec, header.info);
  Layout L;
  try {
    L = make_layout(p, header.info.shape);
  } catch (const Error& e) {
    throw Error(ErrorCode::Format, std::string("bitstream: ") + e.what());
  }
  if (header.info.codec_version == 1) {
    if (header.info.params.count("scale"))
      throw Error(ErrorCode::Format, "bitstream: a cachegen layout version 1 stream with a scale parameter");
    L.scale = Layout::Scale::Channel;
  }
  ByteReader r(header.codec_header, "cachegen header");
  if (r.u8() != kCoderRange) r.fail("unknown entropy coder");
  const std::uint8_t mode = r.u8();
  if (mode != kTablesProfile && mode != kTablesObject) r.fail("unknown table mode");
  std::string hash;
  if (mode == kTablesProfile) {
    auto h = r.bytes(16);
    hash.assign(reinterpret_cast<const char*>(h.data()), 16);
    if (hash.find_first_not_of("0123456789abcdef") != std::string::npos) r.fail("bad profile hash");
  }
  if (p.get("channel_weighting") == "calibrated") {
    if (L.delta_mode == Layout::DeltaMode::Float || L.scale == Layout::Scale::Channel)
      r.fail("channel scales with float deltas or scale=channel");
    read_channel_scales(r, L);
  }
  if (!r.done()) r.fail("trailing bytes");
  std::vector<LayerModels> models(std::size_t(L.layers) * 2);
  if (mode == kTablesProfile) {
    const auto shared = load_profile_by_hash(hash, options.profile_dir);
    const Profile& prof = *shared;
    if (!profile_fits(prof, L))
      throw Error(ErrorCode::Format, "bitstream: calibration profile " + hash + " does not match the stream");
    for (std::size_t lk = 0; lk < models.size(); ++lk) {
      models[lk].anchor.assign(prof.anchor.begin() + lk * L.channels,
                               prof.anchor.begin() + (lk + 1) * L.channels);
      models[lk].delta.assign(prof.delta.begin() + lk * L.channels,
                              prof.delta.begin() + (lk + 1) * L.channels);
      models[lk].raw.assign(prof.raw.begin() + lk * L.channels, prof.raw.begin() + (lk + 1) * L.channels);
    }
  } else if (mode == kTablesObject) {
    // Anchor and delta CDFs (alphabet + 1 words each per channel) count
    // against the decoder's cap with the cache (docs/hostile-input.md).
    std::uint64_t words = header.info.shape.elements();
    for (std::size_t lk = 0; lk < models.size(); ++lk) {
      if (tables[lk].empty()) continue;
      const int l = int(lk / 2), k = int(lk % 2);
      words +=
          std::uint64_t(L.channels) * std::uint64_t(L.anchor_alphabet(l, k) + L.delta_alphabet(l, k) + 2);
    }
    require_within_limit(words, options.max_elements, "bitstream (cache and symbol tables)");
    for (std::size_t lk = 0; lk < models.size(); ++lk) {
      if (tables[lk].empty()) continue;  // decode_section loads only what it needs
      const int l = int(lk / 2), k = int(lk % 2);
      const int A = L.anchor_alphabet(l, k), B = L.delta_alphabet(l, k);
      ByteReader t(tables[lk], "cachegen table (layer " + std::to_string(l) + ")");
      auto& m = models[lk];
      m.anchor.resize(L.channels);
      m.delta.resize(L.channels);
      m.raw.resize(L.channels);
      for (int c = 0; c < L.channels; ++c) {
        m.raw[c] = t.u8();
        if (m.raw[c] > 1) t.fail("bad channel mode");
        if (m.raw[c] && L.delta_mode == Layout::DeltaMode::Float) t.fail("raw channel with float deltas");
        m.anchor[c] = read_table_model(t, A, L.table_bits);
        m.delta[c] = read_table_model(t, B, L.table_bits);
        if (m.raw[c] && !m.delta[c].empty()) t.fail("raw channel with a delta model");
      }
      if (!t.done()) t.fail("trailing bytes");
    }
  }
  if (L.reconstruction > 0.0f)
    for (std::size_t lk = 0; lk < models.size(); ++lk) {
      auto& m = models[lk];
      if (m.anchor.empty()) continue;  // not loaded (decode_section loads only what it needs)
      const int M = L.M(int(lk / 2), int(lk % 2));
      const std::size_t A = std::size_t(2 * M + 1);
      m.levels.resize(m.anchor.size() * A);
      for (std::size_t c = 0; c < m.anchor.size(); ++c)
        reconstruction_levels(m.anchor[c], M, L.reconstruction, m.levels.data() + c * A);
    }
  std::optional<RopeRestore> rope;
  if (L.key_space == Layout::KeySpace::PreRope && header.info.info.rope_applied)
    rope = rope_restore(header, L);
  return std::make_unique<CachegenDecoder>(L, std::move(models), std::move(rope));
}

}  // namespace kvscope::codec::detail::cachegen
