// SPDX-License-Identifier: Apache-2.0
// `transform`: transform coding of the KV cache (KVTC-style; docs/bitstream.md,
// "transform"). Per layer and K/V (or per KV head), each token's channels
// (keys before RoPE) minus the basis mean are projected on a PCA basis; the
// coefficients of the components the budget codes (codec_transform_plan.cpp)
// are quantized with one uniform step and range-coded with a per-component
// two-sided geometric model (transform_model.h); the other components are
// dropped (zero bits). The first sink_tokens and the last recent_tokens
// tokens are stored exactly at fp16. Decoding dequantizes, inverse-projects
// (transform_kernels.h), adds the mean and re-applies RoPE to the keys.
// The basis comes from the model's calibration file (referenced by hash) or
// from the cache itself, then shipped in one Table section per (layer, kind).
#include "codec_transform.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "codecs.h"
#include "entropy.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"
#include "kvscope/kv/rope.h"
#include "transform_kernels.h"
#include "transform_model.h"

namespace kvscope::codec::detail {
namespace transform {
namespace {

constexpr std::uint8_t kSourceCalibration = 0, kSourceShipped = 1;
constexpr std::int64_t kMaxCenter = 1 << 20;
constexpr float kMaxStep = 4294967296.0f;
constexpr std::uint16_t kHalfOne = 0x3C00;  // 1.0 in f16
// Parameters layout versions 2 and 3 added.
constexpr const char* kWeightingParams[] = {"key_weighting", "value_weighting"};
constexpr const char* kGainParam = "value_gain";

std::uint64_t zigzag(std::int64_t v) {
  return v < 0 ? (std::uint64_t(-(v + 1)) << 1) | 1 : std::uint64_t(v) << 1;
}
std::int64_t unzigzag(std::uint64_t v) {
  return (v & 1) ? -std::int64_t(v >> 1) - 1 : std::int64_t(v >> 1);
}

// One (layer, kind)'s basis as the decoder uses it: means and the component
// vectors it may need (all of a calibrated basis, the shipped ones otherwise).
struct DecodeBasis {
  std::vector<int> rows;       // per group: components shipped
  int stride = 0;              // largest rows: vectors of group g start at g * stride * n
  std::vector<float> mean;     // groups x n
  std::vector<float> vectors;  // groups x stride x n
};

class TransformDecoder : public ChunkDecoder {
 public:
  TransformDecoder(Settings s, bool rope, std::uint16_t version, kv::CacheInfo info,
                   const BasisSet* calibrated, std::shared_ptr<const Calibration> keep,
                   std::vector<DecodeBasis> shipped)
      : s_(std::move(s)),
        rope_(rope),
        scaled_(version >= kLayoutWeighted),
        gained_(version >= kLayoutGained),
        info_(std::move(info)),
        calibrated_(calibrated),
        keep_(std::move(keep)),
        shipped_(std::move(shipped)) {}

  void decode(const SectionInfo& sec, std::span<const std::uint8_t> payload,
              const TensorOut& out) const override {
    const int G = s_.groups(), n = s_.group_dim(), D = s_.head_dim;
    const std::size_t lk = std::size_t(sec.layer) * 2 + int(sec.kv);
    ByteReader r(payload, "transform chunk (layer " + std::to_string(sec.layer) + ", " +
                              kv::to_string(sec.kv) + ", tokens " + std::to_string(sec.token_begin) + ")");
    const DecodeBasis* shipped = nullptr;
    if (!calibrated_) {
      shipped = &shipped_[lk];
      if (shipped->mean.empty()) r.fail("the Table section of this layer and kind is missing");
    }
    std::vector<int> exact, coded;
    for (int t = 0; t < sec.token_count; ++t) (s_.exact(sec.token_begin + t) ? exact : coded).push_back(t);
    // Exact tokens, [head][token][dim] at fp16.
    r.need(exact.size() * std::size_t(s_.kv_heads) * D * 2);
    for (int h = 0; h < s_.kv_heads; ++h)
      for (int t : exact) {
        float* dst = out.data + (std::size_t(h) * out.tokens + out.token_offset + t) * D;
        for (int d = 0; d < D; ++d) dst[d] = half_to_float(r.u16());
      }
    // Group headers.
    struct Group {
      std::vector<float> step;  // per coded component
      std::vector<int> comp;
      std::vector<std::int64_t> center;
      std::vector<FreqModel> model;
    };
    std::vector<Group> groups(G);
    for (int gi = 0; gi < G; ++gi) {
      auto& g = groups[gi];
      const int rows = calibrated_ ? n : shipped->rows[gi];
      const std::uint64_t m = r.varint();
      if (m > std::uint64_t(rows)) r.fail("more coded components than the basis has");
      if (m == 0) continue;
      const float step = r.f32();
      if (!std::isfinite(step) || !(step > 0) || step > kMaxStep) r.fail("invalid quantization step");
      int prev = -1;
      for (std::uint64_t i = 0; i < m; ++i) {
        const std::uint64_t gap = r.varint();
        if (gap >= std::uint64_t(rows - prev - 1)) r.fail("component index out of range");
        prev += 1 + int(gap);
        const std::uint64_t zc = r.varint();
        if (zc > 2 * std::uint64_t(kMaxCenter)) r.fail("component center out of range");
        const int classes = r.u8();
        if (classes > kMaxClasses) r.fail("too many magnitude classes");
        const std::uint16_t rho = r.u16();
        float component_step = step;
        if (scaled_) {
          const float scale = half_to_float(r.u16());
          if (!std::isfinite(scale) || !(scale > 0)) r.fail("invalid component step scale");
          component_step = step * scale;
          if (!std::isfinite(component_step) || !(component_step > 0)) r.fail("component step out of range");
        }
        g.step.push_back(component_step);
        g.comp.push_back(prev);
        g.center.push_back(unzigzag(zc));
        g.model.push_back(geometric_model(rho, classes));
      }
    }
    // Version 3 value chunks: a f16 gain per coded token of every group that
    // codes components; a token's coefficients are multiplied by it.
    std::vector<std::vector<float>> gain(G);
    if (gained_ && sec.kv == kv::Kind::Value)
      for (int gi = 0; gi < G; ++gi) {
        if (groups[gi].comp.empty()) continue;
        r.need(coded.size() * 2);
        gain[gi].resize(coded.size());
        for (float& v : gain[gi]) {
          v = half_to_float(r.u16());
          if (!std::isfinite(v) || !(v > 0)) r.fail("invalid token gain");
        }
      }
    // Coefficients, token by token, group by group, component by component.
    std::vector<std::vector<DecodeTable>> tables(G);
    std::vector<std::vector<float>> y(G);
    for (int gi = 0; gi < G; ++gi) {
      const auto& g = groups[gi];
      tables[gi].resize(g.comp.size());
      for (std::size_t j = 0; j < g.comp.size(); ++j) tables[gi][j].build(g.model[j]);
      y[gi].resize(coded.size() * g.comp.size());
    }
    RangeDecoder dec(r.bytes(r.remaining()));
    for (std::size_t t = 0; t < coded.size(); ++t)
      for (int gi = 0; gi < G; ++gi) {
        const auto& g = groups[gi];
        const std::size_t m = g.comp.size();
        float* yt = y[gi].data() + t * m;
        for (std::size_t j = 0; j < m; ++j) {
          const std::int64_t q = g.center[j] + decode_offset(dec, tables[gi][j]);
          yt[j] = float(q) * g.step[j];
        }
        if (!gain[gi].empty())
          for (std::size_t j = 0; j < m; ++j) yt[j] *= gain[gi][t];
      }
    // The stream must end exactly as the encoder ends one (docs/bitstream.md
    // section 2, "End of a stream"): no trailing or missing bytes.
    if (const char* e = dec.end_error()) r.fail(std::string("the coefficient stream ") + e);
    // Inverse projection and mean into [head][coded token][dim], RoPE, scatter.
    const std::size_t Tc = coded.size();
    std::vector<float> rowsbuf, xs(Tc * std::size_t(n)), tok(std::size_t(s_.kv_heads) * Tc * D);
    for (int gi = 0; gi < G; ++gi) {
      const auto& g = groups[gi];
      const std::size_t m = g.comp.size();
      rowsbuf.resize(m * n);
      const float* mean;
      if (calibrated_) {
        const GroupBasis& b = calibrated_->bases[lk * G + gi];
        for (std::size_t j = 0; j < m; ++j)
          std::copy(b.component(g.comp[j]), b.component(g.comp[j]) + n, rowsbuf.data() + j * n);
        mean = b.mean.data();
      } else {
        const float* v = shipped->vectors.data() + std::size_t(gi) * shipped->stride * n;
        for (std::size_t j = 0; j < m; ++j)
          std::copy(v + std::size_t(g.comp[j]) * n, v + std::size_t(g.comp[j] + 1) * n,
                    rowsbuf.data() + j * n);
        mean = shipped->mean.data() + std::size_t(gi) * n;
      }
      if (Tc > 0) matmul_rows(y[gi].data(), m, int(Tc), int(m), rowsbuf.data(), n, n, xs.data(), n);
      const int h0 = s_.grouping == Grouping::Layer ? 0 : gi;
      for (std::size_t t = 0; t < Tc; ++t) {
        const float* xt = xs.data() + t * n;
        for (int c = 0; c < n; ++c) tok[((h0 + c / D) * Tc + t) * D + c % D] = xt[c] + mean[c];
      }
    }
    if (rope_ && sec.kv == kv::Kind::Key && Tc > 0) {
      std::vector<std::int32_t> pos(Tc);
      const bool have = info_.positions.size() == std::size_t(s_.tokens);
      for (std::size_t t = 0; t < Tc; ++t)
        pos[t] = have ? info_.positions[sec.token_begin + coded[t]] : sec.token_begin + coded[t];
      const auto freq = kv::layer_rope_inv_freq(info_, s_.layers, sec.layer, D);
      kv::RopeRotation(freq, pos).apply(tok, s_.kv_heads);
    }
    for (int h = 0; h < s_.kv_heads; ++h)
      for (std::size_t t = 0; t < Tc; ++t)
        std::copy(tok.data() + (h * Tc + t) * D, tok.data() + (h * Tc + t + 1) * D,
                  out.data + (std::size_t(h) * out.tokens + out.token_offset + coded[t]) * D);
  }

 private:
  Settings s_;
  bool rope_;
  bool scaled_;         // layout version 2: a step scale per component
  bool gained_;         // layout version 3: value chunks carry a gain per coded token
  kv::CacheInfo info_;  // RoPE tables and positions (rope_)
  const BasisSet* calibrated_;
  std::shared_ptr<const Calibration> keep_;
  std::vector<DecodeBasis> shipped_;
};

class TransformCodec : public CodecBase {
 public:
  std::string name() const override { return kName; }
  std::string description() const override {
    return "Transform coding (KVTC-style): PCA per layer (keys before RoPE), bits allocated by variance "
           "under a "
           "budget, range-coded.";
  }
  std::vector<ParamSpec> params(const kv::CacheShape* shape) const override { return param_specs(shape); }
  bool has_tables(const StreamHeader& header) const override {
    return !header.codec_header.empty() && header.codec_header[0] == kSourceShipped;
  }
  ParamSet complete_params(const ParamSet& given, const kv::CacheShape&) const override {
    return resolve_weighting(given);
  }
  std::uint16_t codec_version() const override { return kLayoutGained; }
  std::uint16_t oldest_codec_version() const override { return kLayoutPlain; }

  // Streams without the newer features keep their older layout version,
  // byte for byte as before: the header lists only that version's parameters.
  void describe_header(const Params& p, const kv::CacheShape& shape, EncodedParts& parts) const override {
    const Settings s = make_settings(p, shape);
    parts.codec_version = s.layout_version();
    if (parts.codec_version < kLayoutGained) {
      ParamSet values = p.values();
      values.erase(kGainParam);
      if (parts.codec_version < kLayoutWeighted)
        for (const char* v2 : kWeightingParams) values.erase(v2);
      parts.header_params = std::move(values);
    }
  }

  // A version 1 stream was not weighted and a version 1-2 stream had no
  // token gains, whatever today's defaults are.
  ParamSet coded_params(const StreamInfo& info) const override {
    ParamSet out = CodecBase::coded_params(info);
    if (info.codec_version < kLayoutWeighted)
      for (const char* v2 : kWeightingParams) out[v2] = "0";
    if (info.codec_version < kLayoutGained) out[kGainParam] = "0";
    return out;
  }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    require_finite(cache, name());
    Settings s = make_settings(p, cache.shape());
    kv::KVCache storage;
    const kv::KVCache& input = transform_input(cache, s, storage);
    const Bases bases = make_bases(input, s, o.threads);
    report_progress(o.progress, 0.2, "transform: allocating bits");
    const Decisions dec = decide(input, s, bases, container_header_bytes(p, cache, bases.shipped), o.threads);
    report_progress(o.progress, 0.4, "transform: coding");

    const bool ship = bases.shipped;
    const int G = s.groups(), n = s.group_dim(), D = s.head_dim, LK = s.layers * 2;
    const int chunks = chunk_count(s.tokens, s.chunk_tokens);
    const int per_lk = chunks + (ship ? 1 : 0);
    EncodedParts parts;
    describe_header(p, cache.shape(), parts);
    ByteWriter hw(parts.codec_header);
    hw.u8(ship ? kSourceShipped : kSourceCalibration);
    hw.u8(s.rope_coded ? 1 : 0);
    if (!ship)
      for (char c : bases.calibration.hash) hw.u8(std::uint8_t(c));
    parts.sections.resize(std::size_t(LK) * per_lk);
    std::vector<double> entropy(LK, 0.0);
    std::atomic<int> done{0};
    parallel_for(std::size_t(LK), o.threads, [&](std::size_t lk) {
      const int layer = int(lk / 2);
      const kv::Kind kind = kv::Kind(lk % 2);
      SectionData* sec = parts.sections.data() + lk * per_lk;
      if (ship) {
        sec->kind = SectionKind::Table;
        sec->layer = layer;
        sec->kv = kind;
        ByteWriter w(sec->payload);
        for (int g = 0; g < G; ++g) {
          const GroupCode& gc = dec.groups[lk * G + g];
          const GroupBasis& b = bases.set->bases[lk * G + g];
          const int rows = gc.components.empty() ? 0 : gc.components.back() + 1;
          w.varint(std::uint64_t(rows));
          for (float v : b.mean) w.f32(v);
          for (std::size_t i = 0; i < std::size_t(rows) * n; ++i) w.u16(float_to_half(b.vectors[i]));
        }
        sec->table_bytes = sec->payload.size();
        ++sec;
      }
      const float* original = cache.tensor(layer, kind).data();
      const float* tensor = input.tensor(layer, kind).data();
      std::vector<float> x, ut, yv;
      for (int ci = 0; ci < chunks; ++ci, ++sec) {
        sec->kind = SectionKind::Chunk;
        sec->layer = layer;
        sec->kv = kind;
        sec->token_begin = ci * s.chunk_tokens;
        sec->token_count = std::min(s.chunk_tokens, s.tokens - sec->token_begin);
        std::vector<int> exact, coded;
        for (int t = sec->token_begin; t < sec->token_begin + sec->token_count; ++t)
          (s.exact(t) ? exact : coded).push_back(t);
        ByteWriter w(sec->payload);
        for (int h = 0; h < s.kv_heads; ++h)
          for (int t : exact)
            for (int d = 0; d < D; ++d)
              w.u16(float_to_half(original[(std::size_t(h) * s.tokens + t) * D + d]));
        const std::size_t exact_bytes = sec->payload.size();
        const int T = int(coded.size());
        // Quantized offsets per group: [token][component]; value_gain's
        // token gains per group (written after the group headers).
        std::vector<std::vector<int>> offsets(G);
        std::vector<std::vector<std::uint16_t>> gains(G);
        const bool gained = s.value_gain > 0 && kind == kv::Kind::Value;
        std::vector<std::vector<FreqModel>> models(G);
        for (int g = 0; g < G; ++g) {
          const GroupCode& gc = dec.groups[lk * G + g];
          const GroupBasis& b = bases.set->bases[lk * G + g];
          const int m = int(gc.components.size());
          w.varint(std::uint64_t(m));
          if (m == 0) continue;
          w.f32(float(gc.step));
          x.resize(std::size_t(T) * n);
          for (int i = 0; i < T; ++i) {
            float* xi = x.data() + std::size_t(i) * n;
            gather_token(tensor, s, g, coded[i], xi);
            for (int c = 0; c < n; ++c) xi[c] -= b.mean[c];
          }
          ut.assign(std::size_t(n) * m, 0.0f);
          for (int j = 0; j < m; ++j)
            for (int c = 0; c < n; ++c) ut[std::size_t(c) * m + j] = b.component(gc.components[j])[c];
          yv.resize(std::size_t(T) * m);
          if (T > 0) matmul_rows(x.data(), n, T, n, ut.data(), m, m, yv.data(), m);
          if (gained) {
            gains[g] = token_gains(x.data(), T, n, s.value_gain);
            divide_by_gains(gains[g], m, yv.data());
          }
          auto& off = offsets[g];
          off.resize(std::size_t(T) * m);
          int prev = -1;
          for (int j = 0; j < m; ++j) {
            const float step = gc.component_step(gc.components[j]);
            double usum = 0;
            for (int i = 0; i < T; ++i) usum += double(yv[std::size_t(i) * m + j]) / double(step);
            const std::int64_t center =
                T > 0
                    ? std::int64_t(round_even(std::clamp(usum / T, -double(kMaxCenter), double(kMaxCenter))))
                    : 0;
            std::uint64_t counts[alphabet(kMaxClasses)] = {};
            std::uint32_t max_abs = 0;
            double abs_sum = 0;
            for (int i = 0; i < T; ++i) {
              const int d = quantize_offset(double(yv[std::size_t(i) * m + j]) / double(step), double(center),
                                            s.deadzone);
              off[std::size_t(i) * m + j] = d;
              const std::uint32_t mag = std::uint32_t(d < 0 ? -d : d);
              max_abs = std::max(max_abs, mag);
              abs_sum += mag;
              ++counts[symbol_of(d)];
            }
            const int classes = classes_for(max_abs);
            const std::uint16_t rho =
                fit_rho({counts, std::size_t(alphabet(classes))}, classes, T > 0 ? abs_sum / T : 0.0);
            w.varint(std::uint64_t(gc.components[j] - prev - 1));
            prev = gc.components[j];
            w.varint(zigzag(center));
            w.u8(std::uint8_t(classes));
            w.u16(rho);
            if (s.layout_version() >= kLayoutWeighted)
              w.u16(gc.scale.empty() ? kHalfOne : gc.scale[std::size_t(gc.components[j])]);
            models[g].push_back(geometric_model(rho, classes));
            for (int sym = 0; sym < alphabet(classes); ++sym)
              if (counts[sym]) {
                const int k = sym == 0 ? 0 : (sym - 1) >> 1;
                entropy[lk] += double(counts[sym]) *
                               (kProbBits - std::log2(double(models[g].back().freq(sym))) + double(k));
              }
          }
        }
        for (const auto& gg : gains)
          for (std::uint16_t v : gg) w.u16(v);
        sec->table_bytes = sec->payload.size() - exact_bytes;
        RangeEncoder enc(sec->payload);
        for (int i = 0; i < T; ++i)
          for (int g = 0; g < G; ++g) {
            const std::size_t m = models[g].size();
            const int* oi = offsets[g].data() + std::size_t(i) * m;
            for (std::size_t j = 0; j < m; ++j) encode_offset(enc, models[g][j], oi[j]);
          }
        enc.finish();
      }
      report_progress(o.progress, 0.4 + 0.6 * double(++done) / LK, "transform: coding");
    });
    for (double e : entropy) parts.entropy_bits += e;
    return parts;
  }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>& tables,
                                             const DecodeOptions& options) const override {
    const Params p = stream_params(*this, header);
    const Settings s = make_settings(p, header.info.shape);
    const auto ch = header.codec_header;
    if (ch.size() < 2 || ch[0] > kSourceShipped || ch[1] > 1 ||
        ch.size() != (ch[0] == kSourceCalibration ? 18u : 2u))
      throw Error(ErrorCode::Format, "transform: bad codec header");
    const bool rope = ch[1] == 1;
    const std::uint16_t version = header.info.codec_version;
    if (rope && (!header.info.info.rope_applied || header.info.shape.head_dim % 2 != 0))
      throw Error(ErrorCode::Format, "transform: keys coded before RoPE in a stream of a cache without RoPE");
    const int G = s.groups(), n = s.group_dim();
    if (ch[0] == kSourceCalibration) {
      const std::string hash(ch.begin() + 2, ch.end());
      if (hash.find_first_not_of("0123456789abcdef") != std::string::npos)
        throw Error(ErrorCode::Format, "transform: bad calibration hash");
      LoadedCalibration cal = load_calibration_by_hash(hash, options.profile_dir);
      const BasisSet* set = cal.bases().find(s.grouping);
      if (!set)
        throw Error(ErrorCode::Format, "bitstream: calibration " + hash +
                                           " has no transform basis for grouping '" + to_string(s.grouping) +
                                           "'");
      check_basis_fits(*set, s, "bitstream: calibration " + hash, true);
      return std::make_unique<TransformDecoder>(s, rope, version, header.info.info, set, cal.calibration,
                                                std::vector<DecodeBasis>{});
    }
    std::vector<DecodeBasis> shipped(std::size_t(s.layers) * 2);
    for (std::size_t lk = 0; lk < shipped.size() && lk < tables.size(); ++lk) {
      if (tables[lk].empty()) continue;
      ByteReader r(tables[lk], "transform table (layer " + std::to_string(lk / 2) + ", " +
                                   kv::to_string(kv::Kind(lk % 2)) + ")");
      DecodeBasis& b = shipped[lk];
      std::vector<int> rows(G);
      std::vector<std::vector<float>> vec(G), mean(G);
      for (int g = 0; g < G; ++g) {
        const std::uint64_t k = r.varint();
        if (k > std::uint64_t(n)) r.fail("more basis vectors than channels");
        rows[g] = int(k);
        mean[g].resize(n);
        for (auto& v : mean[g]) {
          v = r.f32();
          if (!std::isfinite(v)) r.fail("non-finite mean");
        }
        r.need(std::size_t(k) * n * 2);
        vec[g].resize(std::size_t(k) * n);
        for (auto& v : vec[g]) {
          v = half_to_float(r.u16());
          if (!std::isfinite(v)) r.fail("non-finite basis vector entry");
        }
      }
      if (!r.done()) r.fail("trailing bytes");
      b.rows = rows;
      b.stride = *std::max_element(rows.begin(), rows.end());
      b.mean.resize(std::size_t(G) * n);
      b.vectors.assign(std::size_t(G) * b.stride * n, 0.0f);
      for (int g = 0; g < G; ++g) {
        std::copy(mean[g].begin(), mean[g].end(), b.mean.begin() + std::size_t(g) * n);
        std::copy(vec[g].begin(), vec[g].end(), b.vectors.begin() + std::size_t(g) * b.stride * n);
      }
    }
    return std::make_unique<TransformDecoder>(s, rope, version, header.info.info, nullptr, nullptr,
                                              std::move(shipped));
  }
};

}  // namespace
}  // namespace transform

const Codec& transform_codec() {
  static const transform::TransformCodec c;
  return c;
}

}  // namespace kvscope::codec::detail
