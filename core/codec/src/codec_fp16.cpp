// SPDX-License-Identifier: Apache-2.0
// `fp16`: the cache stored as IEEE half floats, the reference every ratio is
// quoted against. Chunk payload: u16 per value, [kv_heads][tokens][head_dim].
#include "byte_io.h"
#include "codec_base.h"
#include "codecs.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail {
namespace {

class Fp16Decoder : public ChunkDecoder {
 public:
  void decode(const SectionInfo& s, std::span<const std::uint8_t> payload,
              const TensorOut& out) const override {
    const std::size_t n = std::size_t(out.kv_heads) * s.token_count * out.head_dim;
    if (payload.size() != n * 2)
      throw Error(ErrorCode::Format, "fp16 chunk: payload of " + std::to_string(payload.size()) +
                                         " bytes, expected " + std::to_string(n * 2));
    const std::uint8_t* p = payload.data();
    for (int h = 0; h < out.kv_heads; ++h)
      for (int t = 0; t < s.token_count; ++t) {
        float* dst = out.data + (std::size_t(h) * out.tokens + out.token_offset + t) * out.head_dim;
        for (int d = 0; d < out.head_dim; ++d, p += 2)
          dst[d] = half_to_float(std::uint16_t(p[0] | (p[1] << 8)));
      }
  }
};

class Fp16Codec : public CodecBase {
 public:
  std::string name() const override { return "fp16"; }
  std::string description() const override { return "Raw IEEE half floats (the size reference)."; }
  std::vector<ParamSpec> params(const kv::CacheShape*) const override { return {chunk_tokens_spec(256)}; }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    const auto& sh = cache.shape();
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
      s.payload.reserve(std::size_t(sh.kv_heads) * s.token_count * sh.head_dim * 2);
      ByteWriter w(s.payload);
      for (int h = 0; h < sh.kv_heads; ++h)
        for (int t = 0; t < s.token_count; ++t)
          for (int d = 0; d < sh.head_dim; ++d)
            w.u16(float_to_half(cache.at(s.layer, s.kv, h, s.token_begin + t, d)));
    });
    return parts;
  }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>&,
                                             const DecodeOptions&) const override {
    stream_params(*this, header);
    if (!header.codec_header.empty()) throw Error(ErrorCode::Format, "fp16: unexpected codec header");
    return std::make_unique<Fp16Decoder>();
  }
};

}  // namespace

const Codec& fp16_codec() {
  static const Fp16Codec c;
  return c;
}

}  // namespace kvscope::codec::detail
