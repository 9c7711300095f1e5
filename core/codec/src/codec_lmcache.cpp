// SPDX-License-Identifier: Apache-2.0
// `cachegen-lmcache`: what LMCache's public "cachegen" serde does
// (docs/architecture.md, "What LMCache's code does"), for comparison with the paper: no anchor/delta step; one symmetric
// scale per (layer, kind, token) over all channels, q = round(x/step) + M
// with step = fp16-up(absmax / M), M = bins/2 - 1; per-(layer, kind,
// channel) 16-bit models computed from the object and shipped with it; one
// range-coded stream per (layer, kind, channel, chunk).
#include <algorithm>
#include <atomic>
#include <cmath>

#include "codec_base.h"
#include "codecs.h"
#include "entropy.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail {
namespace {

struct LmLayout {
  int channels = 0;
  std::vector<int> bins[2];
  int M(int l, int k) const { return bins[k][l] / 2 - 1; }
};

std::vector<int> per_layer(const Params& p, const std::string& bins_name, const std::string& splits_name,
                           int layers) {
  const auto bins = p.get(bins_name).empty() ? std::vector<int>{} : p.get_int_list(bins_name);
  const auto splits = p.get(splits_name).empty() ? std::vector<int>{} : p.get_int_list(splits_name);
  return bins_per_layer("cachegen-lmcache", bins, splits, layers, bins_name, splits_name);
}

class LmDecoder : public ChunkDecoder {
 public:
  LmDecoder(LmLayout L, std::vector<std::vector<FreqModel>> models)
      : L_(std::move(L)), models_(std::move(models)) {}
  void decode(const SectionInfo& s, std::span<const std::uint8_t> payload,
              const TensorOut& out) const override {
    const int C = L_.channels, D = out.head_dim, n = s.token_count;
    const int M = L_.M(s.layer, int(s.kv));
    const auto& models = models_[std::size_t(s.layer) * 2 + int(s.kv)];
    if (models.empty())
      throw Error(ErrorCode::Format, "cachegen-lmcache: the table of this layer is missing or empty");
    ByteReader r(payload, "cachegen-lmcache chunk (layer " + std::to_string(s.layer) + ")");
    std::vector<float> step(n);
    for (auto& v : step) {
      v = half_to_float(r.u16());
      if (!std::isfinite(v) || v < 0) r.fail("invalid scale");
    }
    std::vector<std::size_t> len(C);
    std::size_t total = 0;
    for (auto& l : len) {
      const std::uint64_t v = r.varint();
      if (v > r.remaining() || total + v > r.remaining()) r.fail("stream lengths exceed the section");
      l = std::size_t(v);
      total += l;
    }
    if (total != r.remaining()) r.fail("stream lengths do not add up to the section size");
    auto streams = r.bytes(total);
    std::size_t off = 0;
    DecodeTable tab;
    for (int c = 0; c < C; ++c) {
      if (models[c].empty()) r.fail("chunk needs a model that is empty");
      tab.build(models[c]);
      RangeDecoder rd(streams.subspan(off, len[c]));
      off += len[c];
      float* dst = out.data + (std::size_t(c / D) * out.tokens + out.token_offset) * D + c % D;
      for (int t = 0; t < n; ++t) dst[std::size_t(t) * D] = float(rd.decode(tab) - M) * step[t];
      if (const char* e = rd.end_error()) r.fail("the stream of channel " + std::to_string(c) + " " + e);
    }
  }

 private:
  LmLayout L_;
  std::vector<std::vector<FreqModel>> models_;
};

class LmcacheCodec : public CodecBase {
 public:
  std::string name() const override { return "cachegen-lmcache"; }
  std::string description() const override {
    return "CacheGen as LMCache's public code does it: no deltas, per-token absmax scale, shipped "
           "per-channel CDFs.";
  }
  std::vector<ParamSpec> params(const kv::CacheShape* shape) const override {
    const int L = shape && shape->layers > 0 ? shape->layers : 32;
    using T = ParamSpec::Type;
    const bool split = L >= 2;
    return {
        chunk_tokens_spec(256),
        {"key_bins",
         T::IntList,
         split ? "32,16" : "32",
         4,
         256,
         {},
         "quantization bins of keys per layer group"},
        {"key_layer_splits",
         T::IntList,
         split ? std::to_string(std::max(1, L * 10 / 32)) : "",
         1,
         4095,
         {},
         "first layer of each key layer group after the first"},
        {"value_bins",
         T::IntList,
         split ? "32,16" : "32",
         4,
         256,
         {},
         "quantization bins of values per layer group"},
        {"value_layer_splits",
         T::IntList,
         split ? std::to_string(std::max(1, L * 2 / 32)) : "",
         1,
         4095,
         {},
         "first layer of each value layer group after the first"},
    };
  }

  LmLayout layout(const Params& p, const kv::CacheShape& sh) const {
    LmLayout L;
    L.channels = sh.channels();
    L.bins[0] = per_layer(p, "key_bins", "key_layer_splits", sh.layers);
    L.bins[1] = per_layer(p, "value_bins", "value_layer_splits", sh.layers);
    return L;
  }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    require_finite(cache, name());
    const auto& sh = cache.shape();
    const LmLayout L = layout(p, sh);
    const int C = L.channels, D = sh.head_dim, T = sh.tokens;
    const int ct = p.get_int("chunk_tokens");
    const int chunks = chunk_count(T, ct);
    EncodedParts parts;
    parts.sections.resize(std::size_t(sh.layers) * 2 * (chunks + 1));
    std::vector<double> bits(std::size_t(sh.layers) * 2);
    std::atomic<int> done{0};
    parallel_for(bits.size(), o.threads, [&](std::size_t lk) {
      const int l = int(lk / 2), k = int(lk % 2);
      const int M = L.M(l, k), A = 2 * M + 1;
      const float* base = cache.tensor(l, kv::Kind(k)).data();
      std::vector<std::uint16_t> hsteps(T);
      std::vector<std::uint16_t> sym(std::size_t(C) * T);  // [c][t]
      for (int t = 0; t < T; ++t) {
        float amax = 0;
        for (int c = 0; c < C; ++c)
          amax = std::max(amax, std::fabs(base[(std::size_t(c / D) * T + t) * D + c % D]));
        hsteps[t] = half_scale_up(amax / float(M), name());
        const float st = half_to_float(hsteps[t]);
        for (int c = 0; c < C; ++c) {
          const float x = base[(std::size_t(c / D) * T + t) * D + c % D];
          const int q = st > 0 ? std::clamp(int(std::nearbyint(x / st)), -M, M) : 0;
          sym[std::size_t(c) * T + t] = std::uint16_t(q + M);
        }
      }
      std::vector<std::uint64_t> counts(A);
      std::vector<FreqModel> models(C);
      std::size_t si = lk * (chunks + 1);
      auto& table = parts.sections[si++];
      table.kind = SectionKind::Table;
      table.layer = l;
      table.kv = kv::Kind(k);
      ByteWriter tw(table.payload);
      for (int c = 0; c < C; ++c) {
        std::fill(counts.begin(), counts.end(), 0);
        for (int t = 0; t < T; ++t) ++counts[sym[std::size_t(c) * T + t]];
        models[c] = FreqModel::from_counts(counts);
        bits[lk] += models[c].cost_bits(counts);
        models[c].write(tw);
      }
      table.table_bytes = table.payload.size();
      std::vector<std::uint8_t> streams;
      std::vector<std::size_t> lens(C);
      for (int ci = 0; ci < chunks; ++ci, ++si) {
        auto& s = parts.sections[si];
        s.layer = l;
        s.kv = kv::Kind(k);
        s.token_begin = ci * ct;
        s.token_count = std::min(ct, T - s.token_begin);
        ByteWriter w(s.payload);
        for (int t = 0; t < s.token_count; ++t) w.u16(hsteps[s.token_begin + t]);
        streams.clear();
        for (int c = 0; c < C; ++c) {
          const std::size_t before = streams.size();
          RangeEncoder enc(streams);
          const auto& cdf = models[c].cdf;
          const std::uint16_t* sy = sym.data() + std::size_t(c) * T + s.token_begin;
          for (int t = 0; t < s.token_count; ++t) enc.encode(cdf[sy[t]], cdf[sy[t] + 1] - cdf[sy[t]]);
          enc.finish();
          lens[c] = streams.size() - before;
        }
        for (auto n : lens) w.varint(n);
        s.step_bytes = 2 * std::size_t(s.token_count);  // the f16 steps come first
        s.table_bytes = s.payload.size() - s.step_bytes;
        w.bytes(streams.data(), streams.size());
      }
      report_progress(o.progress, double(++done) / double(bits.size()), "encoding cachegen-lmcache");
    });
    for (double b : bits) parts.entropy_bits += b;
    return parts;
  }

  bool has_tables(const StreamHeader&) const override { return true; }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>& tables,
                                             const DecodeOptions& options) const override {
    const Params p = stream_params(*this, header);
    LmLayout L;
    try {
      L = layout(p, header.info.shape);
    } catch (const Error& e) {
      throw Error(ErrorCode::Format, std::string("bitstream: ") + e.what());
    }
    if (!header.codec_header.empty())
      throw Error(ErrorCode::Format, "cachegen-lmcache: unexpected codec header");
    // The tables' CDFs (alphabet + 1 words per channel) count against the
    // decoder's cap with the cache: a few bytes of table allocate ~1 KB.
    std::uint64_t words = header.info.shape.elements();
    for (std::size_t lk = 0; lk < tables.size(); ++lk)
      if (!tables[lk].empty()) words += std::uint64_t(L.channels) * (2 * L.M(int(lk / 2), int(lk % 2)) + 2);
    require_within_limit(words, options.max_elements, "bitstream (cache and symbol tables)");
    std::vector<std::vector<FreqModel>> models(tables.size());
    for (std::size_t lk = 0; lk < tables.size(); ++lk) {
      if (tables[lk].empty()) continue;
      ByteReader t(tables[lk], "cachegen-lmcache table (layer " + std::to_string(lk / 2) + ")");
      const int A = 2 * L.M(int(lk / 2), int(lk % 2)) + 1;
      models[lk].resize(L.channels);
      for (auto& m : models[lk]) m = FreqModel::read(t, A);
      if (!t.done()) t.fail("trailing bytes");
    }
    return std::make_unique<LmDecoder>(std::move(L), std::move(models));
  }
};

}  // namespace

const Codec& lmcache_codec() {
  static const LmcacheCodec c;
  return c;
}

}  // namespace kvscope::codec::detail
