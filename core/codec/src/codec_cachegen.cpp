// `cachegen`: the encoder of the CacheGen paper (docs/architecture.md, "CacheGen").
// step = fp16-up(absmax/M) per token (scale=token, the default), per (token,
// head) or per (chunk, channel), with M from the layer group's bins;
// Q = round(x/step); every group_size-th token of a chunk is an anchor coded as
// Q, the others as Q minus the anchor's Q re-expressed in their step (so a
// group decodes in parallel); symbols are range coded with per-(layer, kind,
// channel) 16-bit models, shipped per object (Table sections) or taken from a
// calibration profile referenced by hash. One coded stream per (layer, kind,
// channel, chunk). Layout version 2; docs/bitstream.md has the exact rules.
#include <algorithm>
#include <atomic>
#include <cmath>

#include "cachegen_block_avx2.h"
#include "cachegen_internal.h"
#include "codecs.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail {
namespace cachegen {

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

std::vector<ParamSpec> param_specs(const kv::CacheShape* shape) {
  const int L = shape && shape->layers > 0 ? shape->layers : 32;
  std::vector<int> ksplits, vsplits;
  // Defaults measured on the default model with per-token steps
  // (docs/cachegen-defaults.md): values follow the paper (finer in the first
  // layers), but keys of the deeper two thirds need the finer bins there; the
  // paper's 32/16/16 for keys cost more bits for a worse continuation.
  std::vector<int> kbins = {16, 24, 24}, vbins = {16, 10};
  if (L >= 3) {
    ksplits = {std::max(1, L / 3), std::max(2, 2 * L / 3)};
  } else {
    kbins = {24};
  }
  if (L >= 2) {
    vsplits = {std::max(1, (L + 8) / 16)};
  } else {
    vbins = {16};
  }
  using T = ParamSpec::Type;
  return {
      chunk_tokens_spec(1024),
      {"group_size",
       T::Int,
       "10",
       1,
       1024,
       {},
       "tokens per anchor group: the first is coded on its own, the rest as deltas to it"},
      {"key_bins",
       T::IntList,
       join(kbins),
       4,
       256,
       {},
       "quantization bins of keys per layer group (shallow to deep)"},
      {"key_layer_splits",
       T::IntList,
       ksplits.empty() ? "" : join(ksplits),
       1,
       4095,
       {},
       "first layer of each key layer group after the first (one fewer than key_bins)"},
      {"value_bins",
       T::IntList,
       join(vbins),
       4,
       256,
       {},
       "quantization bins of values per layer group (shallow to deep)"},
      {"value_layer_splits",
       T::IntList,
       vsplits.empty() ? "" : join(vsplits),
       1,
       4095,
       {},
       "first layer of each value layer group after the first (one fewer than value_bins)"},
      {"delta",
       T::Choice,
       "auto",
       0,
       0,
       {"auto", "always", "never"},
       "anchor/delta coding per channel: always (the paper), never (raw quantized values), auto (the cheaper "
       "per channel)"},
      {"scale",
       T::Choice,
       "token",
       0,
       0,
       {"token", "head", "channel"},
       "what one quantization step (absmax / M) covers: one token over all channels of the layer (token), "
       "one token in one KV head (head), or one channel over the whole chunk (channel)"},
      {"profile",
       T::Text,
       "",
       0,
       0,
       {},
       "calibration profile file (.kvsprof) giving per-model symbol tables; empty = ship tables with the "
       "object"},
  };
}

Layout make_layout(const Params& p, const kv::CacheShape& shape) {
  Layout L;
  L.layers = shape.layers;
  L.channels = shape.channels();
  L.group_size = p.get_int("group_size");
  L.chunk_tokens = p.get_int("chunk_tokens");
  L.heads = shape.kv_heads;
  L.head_dim = shape.head_dim;
  const std::string scale = p.get("scale");
  L.scale = scale == "channel" ? Layout::Scale::Channel
            : scale == "head"  ? Layout::Scale::Head
                               : Layout::Scale::Token;
  const std::string delta = p.get("delta");
  L.delta = delta == "always"  ? Layout::Delta::Always
            : delta == "never" ? Layout::Delta::Never
                               : Layout::Delta::Auto;
  auto list = [&](const std::string& name) {
    return p.get(name).empty() ? std::vector<int>{} : p.get_int_list(name);
  };
  L.bins[0] = bins_per_layer("cachegen", list("key_bins"), list("key_layer_splits"), shape.layers, "key_bins",
                             "key_layer_splits");
  L.bins[1] = bins_per_layer("cachegen", list("value_bins"), list("value_layer_splits"), shape.layers,
                             "value_bins", "value_layer_splits");
  return L;
}

const char* to_string(Layout::Scale s) {
  switch (s) {
    case Layout::Scale::Token:
      return "token";
    case Layout::Scale::Head:
      return "head";
    case Layout::Scale::Channel:
      return "channel";
  }
  return "?";
}

ChunkSymbols quantize_chunk(const kv::KVCache& cache, int layer, kv::Kind kind, int begin, int count,
                            const Layout& layout) {
  const auto& sh = cache.shape();
  const int C = sh.channels(), D = sh.head_dim, H = sh.kv_heads;
  const int M = layout.M(layer, int(kind));
  const int stride = layout.step_stride();
  ChunkSymbols cs;
  cs.begin = begin;
  cs.count = count;
  cs.steps.resize(std::size_t(layout.step_count(count)));
  cs.sym.resize(std::size_t(C) * count);
  cs.raw.resize(std::size_t(C) * count);
  const float* base = cache.tensor(layer, kind).data();
  // Absmax per step slot.
  std::vector<float> amax(cs.steps.size(), 0.0f), step(cs.steps.size());
  for (int h = 0; h < H; ++h) {
    const float* head = base + std::size_t(h) * sh.tokens * D;
    for (int t = 0; t < count; ++t) {
      const float* row = head + std::size_t(begin + t) * D;
      float* a = amax.data() + std::size_t(layout.step_index(h * D, t));
      if (stride == 0) {  // per channel: D slots
        for (int d = 0; d < D; ++d) a[d] = std::max(a[d], std::fabs(row[d]));
      } else {
        float m = 0.0f;
        for (int d = 0; d < D; ++d) m = std::max(m, std::fabs(row[d]));
        *a = std::max(*a, m);
      }
    }
  }
  for (std::size_t i = 0; i < amax.size(); ++i) {
    if (!std::isfinite(amax[i]))
      throw Error(ErrorCode::InvalidArgument, "codec 'cachegen' cannot encode NaN or infinite values");
    cs.steps[i] = half_scale_up(amax[i] / float(M), "cachegen");
    step[i] = half_to_float(cs.steps[i]);
  }
  // Same values as clamp(int(nearbyint(x / step)), -M, M) in the default
  // rounding mode, but inline and vectorisable (nearbyint is a libm call
  // here): x / step is clamped to +-(M + 1) first, and adding and
  // subtracting 1.5 * 2^23 rounds to nearest-even for |x| < 2^22.
  constexpr float kRound = 12582912.0f;
  const float lim = float(M + 1);
  std::vector<int> q(std::size_t(count) * D);
  std::vector<float> den(D), stp(D);
  for (int h = 0; h < H; ++h) {
    const float* head = base + std::size_t(h) * sh.tokens * D;
    for (int t = 0; t < count; ++t) {
      if (t == 0 || stride != 0) {  // the steps of this token's slots
        for (int d = 0; d < D; ++d) {
          stp[d] = step[std::size_t(layout.step_index(h * D + d, t))];
          den[d] = stp[d] > 0 ? stp[d] : 1.0f;  // divisor; 0-step gives 0
        }
      }
      const float* row = head + std::size_t(begin + t) * D;
      int* qr = q.data() + std::size_t(t) * D;
      for (int d = 0; d < D; ++d) {
        const float x = std::min(std::max(row[d] / den[d], -lim), lim);
        const int v = int((x + kRound) - kRound);
        qr[d] = stp[d] > 0 ? std::clamp(v, -M, M) : 0;
      }
    }
    for (int d = 0; d < D; ++d) {
      const int c = h * D + d;
      std::uint16_t* out = cs.sym.data() + std::size_t(c) * count;
      std::uint16_t* raw = cs.raw.data() + std::size_t(c) * count;
      int anchor = 0;
      float anchor_step = 0.0f;
      for (int t = 0; t < count; ++t) {
        const int v = q[std::size_t(t) * D + d];
        raw[t] = std::uint16_t(v + M);
        const float st = step[std::size_t(layout.step_index(c, t))];
        if (t % layout.group_size == 0) {
          anchor = v;
          anchor_step = st;
          out[t] = std::uint16_t(v + M);
        } else {
          out[t] = std::uint16_t(v - predict_from_anchor(anchor, anchor_ratio(anchor_step, st), M) + 2 * M);
        }
      }
    }
  }
  return cs;
}

void count_symbols(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
                   std::vector<std::uint64_t>& ac, std::vector<std::uint64_t>& dc) {
  const int M = layout.M(layer, kind);
  const int A = anchor_alphabet(M), B = delta_alphabet(M);
  for (int c = 0; c < layout.channels; ++c) {
    const std::uint16_t* s = cs.sym.data() + std::size_t(c) * cs.count;
    for (int t = 0; t < cs.count; ++t) {
      if (t % layout.group_size == 0)
        ++ac[std::size_t(c) * A + s[t]];
      else
        ++dc[std::size_t(c) * B + s[t]];
    }
  }
}

void count_raw(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
               std::vector<std::uint64_t>& rc) {
  const int A = anchor_alphabet(layout.M(layer, kind));
  for (int c = 0; c < layout.channels; ++c) {
    const std::uint16_t* s = cs.raw.data() + std::size_t(c) * cs.count;
    for (int t = 0; t < cs.count; ++t) ++rc[std::size_t(c) * A + s[t]];
  }
}

std::uint8_t choose_raw(const Layout& layout, std::span<const std::uint64_t> raw,
                        std::span<const std::uint64_t> anchor, std::span<const std::uint64_t> delta,
                        bool tables_shipped) {
  if (layout.delta == Layout::Delta::Never) return 1;
  if (layout.delta == Layout::Delta::Always) return 0;
  auto table_bits = [&](std::span<const std::uint64_t> counts) {
    if (!tables_shipped) return 0.0;
    std::vector<std::uint8_t> tmp;
    ByteWriter w(tmp);
    FreqModel::from_counts(counts).write(w);
    return 8.0 * double(tmp.size());
  };
  const double raw_bits = entropy_bits(raw) + table_bits(raw);
  const double delta_bits =
      entropy_bits(anchor) + entropy_bits(delta) + table_bits(anchor) + table_bits(delta);
  return raw_bits < delta_bits ? 1 : 0;
}

namespace {

constexpr std::uint8_t kCoderRange = 0;
constexpr std::uint8_t kTablesObject = 0;
constexpr std::uint8_t kTablesProfile = 1;

// Models of one (layer, kind): anchor and delta per channel.
struct LayerModels {
  std::vector<FreqModel> anchor, delta;
  std::vector<std::uint8_t> raw;
};

class CachegenDecoder : public ChunkDecoder {
 public:
  CachegenDecoder(Layout layout, std::vector<LayerModels> models)
      : layout_(std::move(layout)), models_(std::move(models)) {}

  void decode(const SectionInfo& s, std::span<const std::uint8_t> payload,
              const TensorOut& out) const override {
    const int C = layout_.channels, D = out.head_dim, n = s.token_count;
    const int M = layout_.M(s.layer, int(s.kv));
    const auto& lm = models_[std::size_t(s.layer) * 2 + int(s.kv)];
    if (lm.anchor.empty())
      throw Error(ErrorCode::Format, "cachegen: the table of this layer is missing or empty");
    ByteReader r(payload, "cachegen chunk (layer " + std::to_string(s.layer) + ")");
    std::vector<float> step(std::size_t(layout_.step_count(n)));
    for (float& v : step) {
      v = half_to_float(r.u16());
      if (!std::isfinite(v) || v < 0) r.fail("invalid step");
    }
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
    for (int c0 = 0; c0 < C; c0 += kLanes) {
      const int nb = std::min(kLanes, C - c0);
      if (simd && nb == kLanes) {
        Block8 blk;
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
        if (!decode_block_avx2(blk)) r.fail("decoded value out of range (corrupt stream)");
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
          for (int j = 0; j < kLanes; ++j) row[j] = float(qa[j]) * (shared ? sa : cstep[j]);
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
            for (int j = 0; j < kLanes; ++j) row[j] = float(qv[j]) * (shared ? st : cstep[j]);
            row += D;
          }
        }
        if (bad) r.fail("decoded value out of range (corrupt stream)");
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
          dst[j][std::size_t(t) * stride[j]] = float(q) * st;
        }
      }
      if (bad) r.fail("decoded value out of range (corrupt stream)");
    }
  }

 private:
  Layout layout_;
  std::vector<LayerModels> models_;
};

class CachegenCodec : public CodecBase {
 public:
  std::string name() const override { return "cachegen"; }
  std::string description() const override {
    return "CacheGen (paper): anchor/delta token groups, layer-wise bins, per-channel arithmetic coding.";
  }
  std::vector<ParamSpec> params(const kv::CacheShape* shape) const override { return param_specs(shape); }
  // Version 2 added the `scale` parameter and the scaled anchor prediction;
  // version 1 streams have no `scale` and decode as scale=channel.
  std::uint16_t codec_version() const override { return 2; }
  std::uint16_t oldest_codec_version() const override { return 1; }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    const auto& sh = cache.shape();
    const Layout L = make_layout(p, sh);
    const int C = L.channels;
    const int chunks = chunk_count(sh.tokens, L.chunk_tokens);
    Profile profile;
    const bool use_profile = !p.get("profile").empty();
    if (use_profile) {
      profile = load_profile_file(p.get("profile"));
      if (!profile_fits(profile, L))
        throw Error(ErrorCode::InvalidArgument, p.get("profile"),
                    "calibration profile was built for another model shape, other bins or another scale");
    }
    EncodedParts parts;
    ByteWriter hw(parts.codec_header);
    hw.u8(kCoderRange);
    hw.u8(use_profile ? kTablesProfile : kTablesObject);
    if (use_profile) {
      hw.bytes(profile.hash.data(), 16);
    }
    const int per_lk = chunks + (use_profile ? 0 : 1);
    parts.sections.resize(std::size_t(L.layers) * 2 * per_lk);
    std::vector<double> bits(std::size_t(L.layers) * 2, 0.0);
    std::atomic<int> done{0};
    parallel_for(std::size_t(L.layers) * 2, o.threads, [&](std::size_t lk) {
      const int l = int(lk / 2), k = int(lk % 2);
      const int M = L.M(l, k);
      const int A = anchor_alphabet(M), B = delta_alphabet(M);
      std::vector<ChunkSymbols> cs(chunks);
      std::vector<std::uint64_t> ac(std::size_t(C) * A), dc(std::size_t(C) * B), rc(std::size_t(C) * A);
      for (int ci = 0; ci < chunks; ++ci) {
        const int b = ci * L.chunk_tokens;
        cs[ci] = quantize_chunk(cache, l, kv::Kind(k), b, std::min(L.chunk_tokens, sh.tokens - b), L);
        count_symbols(cs[ci], L, l, k, ac, dc);
        count_raw(cs[ci], L, l, k, rc);
      }
      std::vector<FreqModel> am(C), dm(C);
      std::vector<std::uint8_t> raw(C);
      double b = 0;
      for (int c = 0; c < C; ++c) {
        std::span<const std::uint64_t> a{ac.data() + std::size_t(c) * A, std::size_t(A)};
        std::span<const std::uint64_t> d{dc.data() + std::size_t(c) * B, std::size_t(B)};
        std::span<const std::uint64_t> rw{rc.data() + std::size_t(c) * A, std::size_t(A)};
        raw[c] = use_profile ? profile.raw[lk * C + c] : choose_raw(L, rw, a, d, true);
        if (use_profile) {
          am[c] = profile.anchor[lk * C + c];
          dm[c] = profile.delta[lk * C + c];
        } else {
          am[c] = FreqModel::from_counts(raw[c] ? rw : a);
          if (!raw[c]) dm[c] = FreqModel::from_counts(d);
        }
        b += raw[c] ? am[c].cost_bits(rw) : am[c].cost_bits(a) + dm[c].cost_bits(d);
      }
      bits[lk] = b;
      std::size_t si = lk * per_lk;
      if (!use_profile) {
        auto& t = parts.sections[si++];
        t.kind = SectionKind::Table;
        t.layer = l;
        t.kv = kv::Kind(k);
        ByteWriter w(t.payload);
        for (int c = 0; c < C; ++c) {
          w.u8(raw[c]);
          am[c].write(w);
          dm[c].write(w);
        }
        t.table_bytes = t.payload.size();
      }
      std::vector<std::uint8_t> streams;
      std::vector<std::size_t> lens(C);
      std::vector<std::uint32_t> acum, afreq;
      for (int ci = 0; ci < chunks; ++ci, ++si) {
        const auto& q = cs[ci];
        auto& s = parts.sections[si];
        s.layer = l;
        s.kv = kv::Kind(k);
        s.token_begin = q.begin;
        s.token_count = q.count;
        ByteWriter w(s.payload);
        for (auto st : q.steps) w.u16(st);
        streams.clear();
        for (int c = 0; c < C; ++c) {
          const std::size_t before = streams.size();
          RangeEncoder enc(streams);
          const std::uint16_t* sy = (raw[c] ? q.raw.data() : q.sym.data()) + std::size_t(c) * q.count;
          const auto& ac_ = am[c].cdf;
          const auto& dc_ = dm[c].cdf;
          const int group = raw[c] ? 1 : L.group_size;
          for (int t = 0; t < q.count; ++t) {
            const auto& cdf = (t % group == 0) ? ac_ : dc_;
            enc.encode(cdf[sy[t]], cdf[sy[t] + 1] - cdf[sy[t]]);
          }
          enc.finish();
          lens[c] = streams.size() - before;
        }
        for (int c = 0; c < C; ++c) w.varint(lens[c]);
        s.table_bytes = s.payload.size();  // steps and lengths are side info
        w.bytes(streams.data(), streams.size());
      }
      report_progress(o.progress, double(++done) / double(L.layers * 2), "encoding cachegen");
    });
    for (double b : bits) parts.entropy_bits += b;
    return parts;
  }

  bool has_tables(const StreamHeader& header) const override {
    return header.codec_header.size() >= 2 && header.codec_header[1] == kTablesObject;
  }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>& tables,
                                             const DecodeOptions& options) const override {
    const Params p = stream_params(*this, header);
    Layout L;
    try {
      L = make_layout(p, header.info.shape);
    } catch (const Error& e) {
      throw Error(ErrorCode::Format, std::string("bitstream: ") + e.what());
    }
    if (header.info.codec_version == 1) {
      if (header.info.params.count("scale"))
        throw Error(ErrorCode::Format,
                    "bitstream: a cachegen layout version 1 stream with a scale parameter");
      L.scale = Layout::Scale::Channel;
    }
    ByteReader r(header.codec_header, "cachegen header");
    if (r.u8() != kCoderRange) r.fail("unknown entropy coder");
    const std::uint8_t mode = r.u8();
    std::vector<LayerModels> models(std::size_t(L.layers) * 2);
    if (mode == kTablesProfile) {
      auto h = r.bytes(16);
      std::string hash(reinterpret_cast<const char*>(h.data()), 16);
      if (hash.find_first_not_of("0123456789abcdef") != std::string::npos) r.fail("bad profile hash");
      const Profile prof = load_profile_by_hash(hash, options.profile_dir);
      if (!profile_fits(prof, L))
        throw Error(ErrorCode::Format,
                    "bitstream: calibration profile " + hash + " does not match the stream");
      for (std::size_t lk = 0; lk < models.size(); ++lk) {
        models[lk].anchor.assign(prof.anchor.begin() + lk * L.channels,
                                 prof.anchor.begin() + (lk + 1) * L.channels);
        models[lk].delta.assign(prof.delta.begin() + lk * L.channels,
                                prof.delta.begin() + (lk + 1) * L.channels);
        models[lk].raw.assign(prof.raw.begin() + lk * L.channels, prof.raw.begin() + (lk + 1) * L.channels);
      }
    } else if (mode == kTablesObject) {
      for (std::size_t lk = 0; lk < models.size(); ++lk) {
        if (tables[lk].empty()) continue;  // decode_section loads only what it needs
        const int M = L.M(int(lk / 2), int(lk % 2));
        ByteReader t(tables[lk], "cachegen table (layer " + std::to_string(lk / 2) + ")");
        auto& m = models[lk];
        m.anchor.resize(L.channels);
        m.delta.resize(L.channels);
        m.raw.resize(L.channels);
        for (int c = 0; c < L.channels; ++c) {
          m.raw[c] = t.u8();
          if (m.raw[c] > 1) t.fail("bad channel mode");
          m.anchor[c] = FreqModel::read(t, anchor_alphabet(M));
          m.delta[c] = FreqModel::read(t, delta_alphabet(M));
          if (m.raw[c] && !m.delta[c].empty()) t.fail("raw channel with a delta model");
        }
        if (!t.done()) t.fail("trailing bytes");
      }
    } else {
      r.fail("unknown table mode");
    }
    if (!r.done()) r.fail("trailing bytes");
    return std::make_unique<CachegenDecoder>(L, std::move(models));
  }
};

}  // namespace
}  // namespace cachegen

const Codec& cachegen_codec() {
  static const cachegen::CachegenCodec c;
  return c;
}

}  // namespace kvscope::codec::detail
