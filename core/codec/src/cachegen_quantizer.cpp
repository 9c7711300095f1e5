// SPDX-License-Identifier: Apache-2.0
// cachegen's quantizer: from one chunk of one (layer, kind) to steps and
// symbols (docs/bitstream.md, "cachegen"), and the symbol counts the symbol
// models are built from.
#include <algorithm>
#include <cmath>

#include "cachegen_internal.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kv/rope.h"

namespace kvscope::codec::detail::cachegen {

namespace {

// Same values as clamp(int(nearbyint(x / step)), -M, M) in the default
// rounding mode, but inline and vectorisable (nearbyint is a libm call
// here): x / step is clamped to +-(M + 1) first, and adding and subtracting
// 1.5 * 2^23 rounds to nearest-even for |x| < 2^22. `den` is the step, or 1
// for a zero step (whose Q is 0).
inline int quantize(float x, float step, float den, int M) {
  constexpr float kRound = 12582912.0f;
  const float lim = float(M + 1);
  const float y = std::min(std::max(x / den, -lim), lim);
  const int v = int((y + kRound) - kRound);
  return step > 0 ? std::clamp(v, -M, M) : 0;
}

// Dead-zone rounding: |x| / step truncated after adding `offset` (< 0.5
// widens the zero bin and pulls every level's threshold toward the next).
inline int quantize_deadzone(float x, float step, float den, int M, float offset) {
  const float lim = float(M + 1);
  const float y = std::min(std::fabs(x) / den, lim);
  const int a = std::min(int(y + offset), M);
  return step > 0 ? (x < 0 ? -a : a) : 0;
}

inline int quantize(float x, float step, float den, int M, float offset) {
  return offset == 0.5f ? quantize(x, step, den, M) : quantize_deadzone(x, step, den, M, offset);
}

void throw_not_finite() {
  throw Error(ErrorCode::InvalidArgument, "codec 'cachegen' cannot encode NaN or infinite values");
}

// The sink tokens of a chunk as f16, [head][token][dim].
void keep_sinks(const kv::KVCache& cache, int layer, kv::Kind kind, ChunkSymbols& cs) {
  const auto& sh = cache.shape();
  const int D = sh.head_dim, H = sh.kv_heads, ns = cs.sinks;
  const float* base = cache.tensor(layer, kind).data();
  cs.sink_values.resize(std::size_t(H) * ns * D);
  for (int h = 0; h < H; ++h)
    for (int t = 0; t < ns; ++t)
      for (int d = 0; d < D; ++d) {
        const float x = base[(std::size_t(h) * sh.tokens + cs.begin + t) * D + d];
        if (!std::isfinite(x)) throw_not_finite();
        if (std::fabs(x) > 65504.0f)
          throw Error(ErrorCode::InvalidArgument, "codec 'cachegen': a sink token's value exceeds fp16");
        cs.sink_values[(std::size_t(h) * ns + t) * D + d] = float_to_half(x);
      }
}

// Integer mode: steps from the values, Q, and anchor/delta symbols against
// the scaled prediction.
void quantize_integer(const kv::KVCache& cache, int layer, kv::Kind kind, const Layout& layout,
                      ChunkSymbols& cs) {
  const auto& sh = cache.shape();
  const int C = sh.channels(), D = sh.head_dim, H = sh.kv_heads;
  const int M = layout.M(layer, int(kind));
  const int stride = layout.step_stride();
  const int n = cs.coded(), b0 = cs.begin + cs.sinks;
  cs.steps.resize(std::size_t(layout.step_count(n)));
  cs.sym.resize(std::size_t(C) * n);
  cs.raw.resize(std::size_t(C) * n);
  const float* base = cache.tensor(layer, kind).data();
  // Absmax per step slot.
  std::vector<float> amax(cs.steps.size(), 0.0f), step(cs.steps.size());
  for (int h = 0; h < H; ++h) {
    const float* head = base + std::size_t(h) * sh.tokens * D;
    for (int t = 0; t < n; ++t) {
      const float* row = head + std::size_t(b0 + t) * D;
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
    if (!std::isfinite(amax[i])) throw_not_finite();
    cs.steps[i] = half_scale_up(amax[i] / float(M), "cachegen");
    step[i] = half_to_float(cs.steps[i]);
  }
  std::vector<int> q(std::size_t(n) * D);
  std::vector<float> den(D), stp(D);
  for (int h = 0; h < H; ++h) {
    const float* head = base + std::size_t(h) * sh.tokens * D;
    for (int t = 0; t < n; ++t) {
      if (t == 0 || stride != 0) {  // the steps of this token's slots
        for (int d = 0; d < D; ++d) {
          stp[d] = step[std::size_t(layout.step_index(h * D + d, t))];
          den[d] = stp[d] > 0 ? stp[d] : 1.0f;
        }
      }
      const float* row = head + std::size_t(b0 + t) * D;
      int* qr = q.data() + std::size_t(t) * D;
      if (layout.rounding == 0.5f) {
        for (int d = 0; d < D; ++d) qr[d] = quantize(row[d], stp[d], den[d], M);
      } else {
        for (int d = 0; d < D; ++d) qr[d] = quantize_deadzone(row[d], stp[d], den[d], M, layout.rounding);
      }
    }
    for (int d = 0; d < D; ++d) {
      const int c = h * D + d;
      std::uint16_t* out = cs.sym.data() + std::size_t(c) * n;
      std::uint16_t* raw = cs.raw.data() + std::size_t(c) * n;
      int anchor = 0;
      float anchor_step = 0.0f;
      for (int t = 0; t < n; ++t) {
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
}

// Float mode (the paper's change-based coding): an anchor row quantizes its
// values on anchor_M, a delta row its values minus the group anchor's
// reconstruction on M, each row with its own steps (scale token or head).
void quantize_float(const kv::KVCache& cache, int layer, kv::Kind kind, const Layout& layout,
                    ChunkSymbols& cs) {
  const auto& sh = cache.shape();
  const int C = sh.channels(), D = sh.head_dim, H = sh.kv_heads;
  const int M = layout.M(layer, int(kind)), Ma = layout.anchor_M(layer, int(kind));
  const int n = cs.coded(), b0 = cs.begin + cs.sinks;
  const int slots = layout.step_count(1);  // steps per token: 1 (token) or H (head)
  cs.steps.resize(std::size_t(layout.step_count(n)));
  cs.sym.resize(std::size_t(C) * n);
  const float* base = cache.tensor(layer, kind).data();
  std::vector<float> recon_anchor(C, 0.0f), residual(C), amax(slots), step(slots);
  for (int t = 0; t < n; ++t) {
    const bool anchor = t % layout.group_size == 0;
    const int Mt = anchor ? Ma : M;
    std::fill(amax.begin(), amax.end(), 0.0f);
    for (int h = 0; h < H; ++h) {
      const float* row = base + (std::size_t(h) * sh.tokens + b0 + t) * D;
      float& a = amax[std::size_t(layout.step_base(h * D))];
      for (int d = 0; d < D; ++d) {
        const int c = h * D + d;
        const float r = anchor ? row[d] : row[d] - recon_anchor[c];
        residual[c] = r;
        a = std::max(a, std::fabs(r));
      }
    }
    for (int s = 0; s < slots; ++s) {
      if (!std::isfinite(amax[s])) throw_not_finite();
      const std::uint16_t h16 = half_scale_up(amax[s] / float(Mt), "cachegen");
      cs.steps[std::size_t(t) * slots + s] = h16;
      step[s] = half_to_float(h16);
    }
    for (int c = 0; c < C; ++c) {
      const float st = step[std::size_t(layout.step_base(c))];
      const int v = quantize(residual[c], st, st > 0 ? st : 1.0f, Mt, layout.rounding);
      cs.sym[std::size_t(c) * n + t] = std::uint16_t(v + Mt);
      if (anchor) recon_anchor[c] = float(v) * st;
    }
  }
}

}  // namespace

const kv::KVCache& coding_cache(const kv::KVCache& cache, const Layout& layout, kv::KVCache& storage) {
  const bool unrotate = layout.key_space == Layout::KeySpace::PreRope && cache.info.rope_applied;
  if (!unrotate && !layout.weighted()) return cache;
  storage = cache;
  if (unrotate) kv::remove_rope(storage);
  // Channel weighting: divide by the scale the decoder multiplies by.
  const auto& sh = cache.shape();
  const int C = layout.channels, D = sh.head_dim;
  for (int l = 0; l < sh.layers; ++l)
    for (int k = 0; k < 2; ++k) {
      if (!(layout.weighted_kinds >> k & 1)) continue;
      const float* scale = layout.channel_scale.data() + (std::size_t(l) * 2 + k) * C;
      auto t = storage.tensor(l, kv::Kind(k));
      for (int h = 0; h < sh.kv_heads; ++h)
        for (int tok = 0; tok < sh.tokens; ++tok) {
          float* row = t.data() + (std::size_t(h) * sh.tokens + tok) * D;
          for (int d = 0; d < D; ++d) row[d] /= scale[h * D + d];
        }
    }
  return storage;
}

ChunkSymbols quantize_chunk(const kv::KVCache& cache, int layer, kv::Kind kind, int begin, int count,
                            const Layout& layout, const kv::KVCache* sinks_from) {
  ChunkSymbols cs;
  cs.begin = begin;
  cs.count = count;
  cs.sinks = layout.sink_tokens(begin, count);
  keep_sinks(sinks_from ? *sinks_from : cache, layer, kind, cs);
  if (layout.delta_mode == Layout::DeltaMode::Float)
    quantize_float(cache, layer, kind, layout, cs);
  else
    quantize_integer(cache, layer, kind, layout, cs);
  return cs;
}

void count_symbols(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
                   std::vector<std::uint64_t>& ac, std::vector<std::uint64_t>& dc) {
  const int A = layout.anchor_alphabet(layer, kind), B = layout.delta_alphabet(layer, kind);
  const int n = cs.coded();
  for (int c = 0; c < layout.channels; ++c) {
    const std::uint16_t* s = cs.sym.data() + std::size_t(c) * n;
    for (int t = 0; t < n; ++t) {
      if (t % layout.group_size == 0)
        ++ac[std::size_t(c) * A + s[t]];
      else
        ++dc[std::size_t(c) * B + s[t]];
    }
  }
}

void count_raw(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
               std::vector<std::uint64_t>& rc) {
  if (cs.raw.empty()) return;  // float mode
  const int A = layout.anchor_alphabet(layer, kind);
  const int n = cs.coded();
  for (int c = 0; c < layout.channels; ++c) {
    const std::uint16_t* s = cs.raw.data() + std::size_t(c) * n;
    for (int t = 0; t < n; ++t) ++rc[std::size_t(c) * A + s[t]];
  }
}

std::uint8_t choose_raw(const Layout& layout, std::span<const std::uint64_t> raw,
                        std::span<const std::uint64_t> anchor, std::span<const std::uint64_t> delta,
                        bool tables_shipped) {
  if (layout.delta_mode == Layout::DeltaMode::Float) return 0;
  if (layout.delta == Layout::Delta::Never) return 1;
  if (layout.delta == Layout::Delta::Always) return 0;
  auto table_bits = [&](std::span<const std::uint64_t> counts) {
    if (!tables_shipped) return 0.0;
    std::vector<std::uint8_t> tmp;
    ByteWriter w(tmp);
    write_table_model(w, table_model(counts, layout.table_bits), layout.table_bits);
    return 8.0 * double(tmp.size());
  };
  const double raw_bits = entropy_bits(raw) + table_bits(raw);
  const double delta_bits =
      entropy_bits(anchor) + entropy_bits(delta) + table_bits(anchor) + table_bits(delta);
  return raw_bits < delta_bits ? 1 : 0;
}

}  // namespace kvscope::codec::detail::cachegen
