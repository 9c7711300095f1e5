// SPDX-License-Identifier: Apache-2.0
// `int8` and `int4`: the paper's quantization baseline. Per-token symmetric
// uniform quantization: one fp16 step per (layer, kind, token) over all
// kv_heads*head_dim channels, q = round(x / step) in [-M, M], M = 2^(b-1)-1.
// Chunk payload: token_count fp16 steps, then the symbols [head][token][dim]
// (int8: two's complement bytes; int4: q+8 in nibbles, low nibble first).
#include <cmath>

#include "byte_io.h"
#include "codec_base.h"
#include "codecs.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail {
namespace {

class IntDecoder : public ChunkDecoder {
 public:
  explicit IntDecoder(int bits) : bits_(bits) {}
  void decode(const SectionInfo& s, std::span<const std::uint8_t> payload,
              const TensorOut& out) const override {
    const int M = (1 << (bits_ - 1)) - 1;
    const std::size_t n = std::size_t(out.kv_heads) * s.token_count * out.head_dim;
    const std::size_t sym_bytes = bits_ == 8 ? n : (n + 1) / 2;
    const std::string what = "int" + std::to_string(bits_) + " chunk";
    if (payload.size() != std::size_t(s.token_count) * 2 + sym_bytes)
      throw Error(ErrorCode::Format, what + ": payload size mismatch");
    std::vector<float> step(s.token_count);
    for (int t = 0; t < s.token_count; ++t) {
      step[t] = half_to_float(std::uint16_t(payload[2 * t] | (payload[2 * t + 1] << 8)));
      if (!std::isfinite(step[t]) || step[t] < 0) throw Error(ErrorCode::Format, what + ": invalid scale");
    }
    const std::uint8_t* sym = payload.data() + std::size_t(s.token_count) * 2;
    std::size_t i = 0;
    for (int h = 0; h < out.kv_heads; ++h)
      for (int t = 0; t < s.token_count; ++t) {
        float* dst = out.data + (std::size_t(h) * out.tokens + out.token_offset + t) * out.head_dim;
        for (int d = 0; d < out.head_dim; ++d, ++i) {
          int q;
          if (bits_ == 8) {
            q = static_cast<std::int8_t>(sym[i]);
          } else {
            q = int((sym[i >> 1] >> ((i & 1) * 4)) & 0xf) - 8;
          }
          if (q < -M || q > M) throw Error(ErrorCode::Format, what + ": symbol out of range");
          dst[d] = float(q) * step[t];
        }
      }
  }

 private:
  int bits_;
};

class IntCodec : public CodecBase {
 public:
  explicit IntCodec(int bits) : bits_(bits) {}
  std::string name() const override { return "int" + std::to_string(bits_); }
  std::string description() const override {
    return "Per-token symmetric " + std::to_string(bits_) +
           "-bit uniform quantization (the paper's baseline).";
  }
  std::vector<ParamSpec> params(const kv::CacheShape*) const override { return {chunk_tokens_spec(256)}; }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    require_finite(cache, name());
    const auto& sh = cache.shape();
    const int M = (1 << (bits_ - 1)) - 1;
    const int ct = p.get_int("chunk_tokens");
    const int chunks = chunk_count(sh.tokens, ct);
    EncodedParts parts;
    parts.sections.resize(std::size_t(sh.layers) * 2 * chunks);
    parallel_for(parts.sections.size(), o.threads, [&](std::size_t i) {
      const int c = int(i % chunks);
      const int lk = int(i / chunks);
      auto& s = parts.sections[i];
      s.layer = lk / 2;
      s.kv = static_cast<kv::Kind>(lk % 2);
      s.token_begin = c * ct;
      s.token_count = std::min(ct, sh.tokens - s.token_begin);
      ByteWriter w(s.payload);
      std::vector<float> step(s.token_count);
      for (int t = 0; t < s.token_count; ++t) {
        float amax = 0;
        for (int h = 0; h < sh.kv_heads; ++h)
          for (int d = 0; d < sh.head_dim; ++d)
            amax = std::max(amax, std::fabs(cache.at(s.layer, s.kv, h, s.token_begin + t, d)));
        const std::uint16_t hs = half_scale_up(amax / float(M), name());
        step[t] = half_to_float(hs);
        w.u16(hs);
      }
      s.step_bytes = s.payload.size();
      const std::size_t n = std::size_t(sh.kv_heads) * s.token_count * sh.head_dim;
      const std::size_t base = s.payload.size();
      s.payload.resize(base + (bits_ == 8 ? n : (n + 1) / 2), 0);
      std::uint8_t* sym = s.payload.data() + base;
      std::size_t k = 0;
      for (int h = 0; h < sh.kv_heads; ++h)
        for (int t = 0; t < s.token_count; ++t) {
          const float* src = cache.tensor(s.layer, s.kv).data() +
                             (std::size_t(h) * sh.tokens + s.token_begin + t) * sh.head_dim;
          for (int d = 0; d < sh.head_dim; ++d, ++k) {
            int q = step[t] > 0 ? int(std::nearbyint(src[d] / step[t])) : 0;
            q = std::clamp(q, -M, M);
            if (bits_ == 8)
              sym[k] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
            else
              sym[k >> 1] |= std::uint8_t((q + 8) << ((k & 1) * 4));
          }
        }
    });
    return parts;
  }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>&,
                                             const DecodeOptions&) const override {
    stream_params(*this, header);
    if (!header.codec_header.empty()) throw Error(ErrorCode::Format, name() + ": unexpected codec header");
    return std::make_unique<IntDecoder>(bits_);
  }

 private:
  int bits_;
};

}  // namespace

const Codec& int8_codec() {
  static const IntCodec c(8);
  return c;
}
const Codec& int4_codec() {
  static const IntCodec c(4);
  return c;
}

}  // namespace kvscope::codec::detail
