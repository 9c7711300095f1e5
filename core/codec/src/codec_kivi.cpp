// SPDX-License-Identifier: Apache-2.0
// `kivi2`: KIVI's 2-bit asymmetric quantization. Keys per channel over
// groups of `group_size` tokens, values per token over groups of
// `group_size` channels; min and step stored as fp16 (min rounded down, step
// rounded up so every value lies in [min, min + 3*step]); the last
// `residual_tokens` tokens of the cache stay fp16, as KIVI keeps recent
// tokens in full precision.
// Chunk payload: [group params: u16 min, u16 step]..., 2-bit codes
// [head][token][dim] of the quantized tokens (4 per byte, low bits first),
// then fp16 values [head][token][dim] of the chunk's residual tokens.
#include <algorithm>
#include <cmath>

#include "byte_io.h"
#include "codec_base.h"
#include "codecs.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail {
namespace {

// Largest fp16 value <= v (v finite).
std::uint16_t half_down(float v) {
  std::uint16_t h = float_to_half(v);
  if (half_to_float(h) > v)
    h = (h & 0x8000u) ? std::uint16_t(h + 1) : (h == 0 ? 0x8001u : std::uint16_t(h - 1));
  return h;
}

struct Geometry {
  int quantized = 0;  // leading tokens of the chunk that are quantized
  int groups = 0;     // key: token groups; value: channel groups
};

Geometry geometry(const SectionInfo& s, int total_tokens, int residual, int group, int channels, bool key) {
  Geometry g;
  const int q_end = std::max(0, total_tokens - residual);
  g.quantized = std::clamp(q_end - s.token_begin, 0, s.token_count);
  g.groups = key ? (g.quantized + group - 1) / group : (channels + group - 1) / group;
  return g;
}

class KiviDecoder : public ChunkDecoder {
 public:
  KiviDecoder(int tokens, int residual, int group) : tokens_(tokens), residual_(residual), group_(group) {}
  void decode(const SectionInfo& s, std::span<const std::uint8_t> payload,
              const TensorOut& out) const override {
    const int D = out.head_dim, C = out.kv_heads * D;
    const bool key = s.kv == kv::Kind::Key;
    const Geometry g = geometry(s, tokens_, residual_, group_, C, key);
    const std::size_t nparams = key ? std::size_t(C) * g.groups : std::size_t(g.quantized) * g.groups;
    const std::size_t ncodes = std::size_t(C) * g.quantized;
    const std::size_t nfp = std::size_t(C) * (s.token_count - g.quantized);
    ByteReader r(payload, "kivi2 chunk (layer " + std::to_string(s.layer) + ")");
    if (payload.size() != nparams * 4 + (ncodes + 3) / 4 + nfp * 2) r.fail("payload size mismatch");
    std::vector<float> mn(nparams), st(nparams);
    for (std::size_t i = 0; i < nparams; ++i) {
      mn[i] = half_to_float(r.u16());
      st[i] = half_to_float(r.u16());
      if (!std::isfinite(mn[i]) || !std::isfinite(st[i]) || st[i] < 0) r.fail("invalid group parameters");
    }
    auto codes = r.bytes((ncodes + 3) / 4);
    std::size_t i = 0;
    for (int h = 0; h < out.kv_heads; ++h)
      for (int t = 0; t < g.quantized; ++t) {
        float* dst = out.data + (std::size_t(h) * out.tokens + out.token_offset + t) * D;
        for (int d = 0; d < D; ++d, ++i) {
          const int q = (codes[i >> 2] >> ((i & 3) * 2)) & 3;
          const int c = h * D + d;
          const std::size_t p =
              key ? std::size_t(c) * g.groups + t / group_ : std::size_t(t) * g.groups + c / group_;
          dst[d] = mn[p] + float(q) * st[p];
        }
      }
    for (int h = 0; h < out.kv_heads; ++h)
      for (int t = g.quantized; t < s.token_count; ++t) {
        float* dst = out.data + (std::size_t(h) * out.tokens + out.token_offset + t) * D;
        for (int d = 0; d < D; ++d) dst[d] = half_to_float(r.u16());
      }
  }

 private:
  int tokens_, residual_, group_;
};

class KiviCodec : public CodecBase {
 public:
  std::string name() const override { return "kivi2"; }
  std::string description() const override {
    return "KIVI 2-bit asymmetric quantization: keys per channel, values per token, recent tokens in fp16.";
  }
  std::vector<ParamSpec> params(const kv::CacheShape*) const override {
    using T = ParamSpec::Type;
    return {
        chunk_tokens_spec(256),
        {"group_size", T::Int, "32", 1, 4096, {}, "tokens per key group and channels per value group"},
        {"residual_tokens", T::Int, "128", 0, 1 << 24, {}, "most recent tokens kept in fp16"},
    };
  }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    require_finite(cache, name());
    const auto& sh = cache.shape();
    const int ct = p.get_int("chunk_tokens"), G = p.get_int("group_size"), R = p.get_int("residual_tokens");
    const int chunks = chunk_count(sh.tokens, ct);
    const int D = sh.head_dim, C = sh.channels();
    EncodedParts parts;
    parts.sections.resize(std::size_t(sh.layers) * 2 * chunks);
    parallel_for(parts.sections.size(), o.threads, [&](std::size_t i) {
      auto& s = parts.sections[i];
      const int lk = int(i / chunks), ci = int(i % chunks);
      s.layer = lk / 2;
      s.kv = kv::Kind(lk % 2);
      s.token_begin = ci * ct;
      s.token_count = std::min(ct, sh.tokens - s.token_begin);
      SectionInfo si;
      si.token_begin = s.token_begin;
      si.token_count = s.token_count;
      const bool key = s.kv == kv::Kind::Key;
      const Geometry g = geometry(si, sh.tokens, R, G, C, key);
      const float* base = cache.tensor(s.layer, s.kv).data();
      auto x = [&](int t, int c) {
        return base[(std::size_t(c / D) * sh.tokens + s.token_begin + t) * D + c % D];
      };
      const std::size_t nparams = key ? std::size_t(C) * g.groups : std::size_t(g.quantized) * g.groups;
      std::vector<float> mn(nparams), st(nparams);
      ByteWriter w(s.payload);
      for (std::size_t pi = 0; pi < nparams; ++pi) {
        int t0, t1, c0, c1;
        if (key) {
          c0 = int(pi / g.groups), c1 = c0 + 1;
          t0 = int(pi % g.groups) * G, t1 = std::min(g.quantized, t0 + G);
        } else {
          t0 = int(pi / g.groups), t1 = t0 + 1;
          c0 = int(pi % g.groups) * G, c1 = std::min(C, c0 + G);
        }
        float lo = x(t0, c0), hi = lo;
        for (int t = t0; t < t1; ++t)
          for (int c = c0; c < c1; ++c) lo = std::min(lo, x(t, c)), hi = std::max(hi, x(t, c));
        const std::uint16_t hm = half_down(lo);
        mn[pi] = half_to_float(hm);
        if (!std::isfinite(mn[pi]))
          throw Error(ErrorCode::InvalidArgument, "kivi2: values too large for fp16");
        const std::uint16_t hs = half_scale_up((hi - mn[pi]) / 3.0f, name());
        st[pi] = half_to_float(hs);
        w.u16(hm);
        w.u16(hs);
      }
      s.step_bytes = s.payload.size();
      const std::size_t ncodes = std::size_t(C) * g.quantized;
      const std::size_t base_off = s.payload.size();
      s.payload.resize(base_off + (ncodes + 3) / 4, 0);
      std::size_t k = 0;
      for (int h = 0; h < sh.kv_heads; ++h)
        for (int t = 0; t < g.quantized; ++t)
          for (int d = 0; d < D; ++d, ++k) {
            const int c = h * D + d;
            const std::size_t pi =
                key ? std::size_t(c) * g.groups + t / G : std::size_t(t) * g.groups + c / G;
            const int q = st[pi] > 0 ? std::clamp(int(std::nearbyint((x(t, c) - mn[pi]) / st[pi])), 0, 3) : 0;
            s.payload[base_off + (k >> 2)] |= std::uint8_t(q << ((k & 3) * 2));
          }
      ByteWriter fw(s.payload);
      for (int h = 0; h < sh.kv_heads; ++h)
        for (int t = g.quantized; t < s.token_count; ++t)
          for (int d = 0; d < D; ++d) fw.u16(float_to_half(x(t, h * D + d)));
    });
    return parts;
  }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>&,
                                             const DecodeOptions&) const override {
    const Params p = stream_params(*this, header);
    if (!header.codec_header.empty()) throw Error(ErrorCode::Format, "kivi2: unexpected codec header");
    return std::make_unique<KiviDecoder>(header.info.shape.tokens, p.get_int("residual_tokens"),
                                         p.get_int("group_size"));
  }
};

}  // namespace

const Codec& kivi2_codec() {
  static const KiviCodec c;
  return c;
}

}  // namespace kvscope::codec::detail
