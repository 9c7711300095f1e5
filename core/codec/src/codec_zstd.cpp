// SPDX-License-Identifier: Apache-2.0
// `zstd`: the int8 baseline's symbols compressed with zstd at a chosen level,
// what a user would try first. Chunk payload: token_count fp16 steps (as
// int8), then one zstd frame holding the int8 symbols [head][token][dim].
// Only built when zstd is available (KVSCOPE_HAVE_ZSTD).
#include "codecs.h"

#if KVSCOPE_HAVE_ZSTD
#include <zstd.h>

#include <algorithm>
#include <cmath>

#include "byte_io.h"
#include "codec_base.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail {
namespace {

class ZstdDecoder : public ChunkDecoder {
 public:
  void decode(const SectionInfo& s, std::span<const std::uint8_t> payload,
              const TensorOut& out) const override {
    const int D = out.head_dim;
    const std::size_t n = std::size_t(out.kv_heads) * s.token_count * D;
    ByteReader r(payload, "zstd chunk (layer " + std::to_string(s.layer) + ")");
    std::vector<float> step(s.token_count);
    for (auto& v : step) {
      v = half_to_float(r.u16());
      if (!std::isfinite(v) || v < 0) r.fail("invalid scale");
    }
    auto frame = r.bytes(r.remaining());
    // Exactly one frame and nothing after it (ZSTD_decompress would also
    // decode frames appended to the first).
    if (ZSTD_findFrameCompressedSize(frame.data(), frame.size()) != frame.size())
      r.fail("the payload is not exactly one zstd frame");
    const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
    if (size != n) r.fail("zstd frame does not hold the chunk's symbols");
    std::vector<std::int8_t> sym(n);
    const std::size_t got = ZSTD_decompress(sym.data(), n, frame.data(), frame.size());
    if (ZSTD_isError(got) || got != n)
      r.fail(std::string("zstd: ") + (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame"));
    std::size_t i = 0;
    for (int h = 0; h < out.kv_heads; ++h)
      for (int t = 0; t < s.token_count; ++t) {
        float* dst = out.data + (std::size_t(h) * out.tokens + out.token_offset + t) * D;
        for (int d = 0; d < D; ++d, ++i) {
          if (sym[i] == -128) r.fail("symbol out of range");
          dst[d] = float(sym[i]) * step[t];
        }
      }
  }
};

class ZstdCodec : public CodecBase {
 public:
  std::string name() const override { return "zstd"; }
  std::string description() const override {
    return "Per-token int8 symbols compressed with zstd (generic compressor baseline).";
  }
  std::vector<ParamSpec> params(const kv::CacheShape*) const override {
    return {chunk_tokens_spec(256),
            {"level", ParamSpec::Type::Int, "3", 1, 19, {}, "zstd compression level"}};
  }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    require_finite(cache, name());
    const auto& sh = cache.shape();
    const int ct = p.get_int("chunk_tokens"), level = p.get_int("level");
    const int chunks = chunk_count(sh.tokens, ct), D = sh.head_dim;
    EncodedParts parts;
    parts.sections.resize(std::size_t(sh.layers) * 2 * chunks);
    parallel_for(parts.sections.size(), o.threads, [&](std::size_t i) {
      auto& s = parts.sections[i];
      const int lk = int(i / chunks);
      s.layer = lk / 2;
      s.kv = kv::Kind(lk % 2);
      s.token_begin = int(i % chunks) * ct;
      s.token_count = std::min(ct, sh.tokens - s.token_begin);
      const float* base = cache.tensor(s.layer, s.kv).data();
      auto row = [&](int h, int t) { return base + (std::size_t(h) * sh.tokens + s.token_begin + t) * D; };
      ByteWriter w(s.payload);
      std::vector<float> step(s.token_count);
      for (int t = 0; t < s.token_count; ++t) {
        float amax = 0;
        for (int h = 0; h < sh.kv_heads; ++h)
          for (int d = 0; d < D; ++d) amax = std::max(amax, std::fabs(row(h, t)[d]));
        const std::uint16_t hs = half_scale_up(amax / 127.0f, name());
        step[t] = half_to_float(hs);
        w.u16(hs);
      }
      s.step_bytes = s.payload.size();
      std::vector<std::int8_t> sym;
      sym.reserve(std::size_t(sh.kv_heads) * s.token_count * D);
      for (int h = 0; h < sh.kv_heads; ++h)
        for (int t = 0; t < s.token_count; ++t)
          for (int d = 0; d < D; ++d)
            sym.push_back(std::int8_t(
                step[t] > 0 ? std::clamp(int(std::nearbyint(row(h, t)[d] / step[t])), -127, 127) : 0));
      const std::size_t base_off = s.payload.size();
      s.payload.resize(base_off + ZSTD_compressBound(sym.size()));
      const std::size_t got = ZSTD_compress(s.payload.data() + base_off, s.payload.size() - base_off,
                                            sym.data(), sym.size(), level);
      if (ZSTD_isError(got)) throw Error(ErrorCode::Internal, std::string("zstd: ") + ZSTD_getErrorName(got));
      s.payload.resize(base_off + got);
    });
    return parts;
  }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>&,
                                             const DecodeOptions&) const override {
    stream_params(*this, header);
    if (!header.codec_header.empty()) throw Error(ErrorCode::Format, "zstd: unexpected codec header");
    return std::make_unique<ZstdDecoder>();
  }
};

}  // namespace

const Codec* zstd_codec() {
  static const ZstdCodec c;
  return &c;
}

}  // namespace kvscope::codec::detail
#else
namespace kvscope::codec::detail {
const Codec* zstd_codec() {
  return nullptr;
}
}  // namespace kvscope::codec::detail
#endif
