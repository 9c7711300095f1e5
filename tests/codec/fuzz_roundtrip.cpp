// SPDX-License-Identifier: Apache-2.0
// Round-trip fuzz target: the input chooses a codec, a cache shape, values
// (synthetic, raw fp16 bit patterns, constant or zero, at any scale) and
// parameters; the cache is encoded, decoded, and every value must come back
// within the codec's documented bound (docs/bitstream.md section 3),
// computed here from the original values and the document's rules, not from
// the decoder. One chunk is also decoded alone and must match. A value out
// of bound, a decode failure of a fresh stream, or a shape/info mismatch
// aborts (a finding). fuzz_roundtrip_replay_test.cpp replays it under ctest.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"

namespace kvscope::test {
namespace {

// Reads choices from the input; past its end every read is 0.
class Choices {
 public:
  explicit Choices(std::span<const std::uint8_t> in) : in_(in) {}
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | byte();
    return v;
  }
  int range(int lo, int hi) { return lo + int(u32() % std::uint32_t(hi - lo + 1)); }
  std::uint8_t byte() { return pos_ < in_.size() ? in_[pos_++] : 0; }
  std::uint16_t u16() { return std::uint16_t(byte() | (byte() << 8)); }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

// Smallest fp16 >= v (v >= 0), and largest fp16 <= v: the rounding the
// document gives for steps and kivi2 minima.
float half_up(float v) {
  std::uint16_t h = float_to_half(v);
  if (half_to_float(h) < v) ++h;
  return half_to_float(h);
}
float half_down(float v) {
  std::uint16_t h = float_to_half(v);
  if (half_to_float(h) > v)
    h = (h & 0x8000u) ? std::uint16_t(h + 1) : (h == 0 ? 0x8001u : std::uint16_t(h - 1));
  return half_to_float(h);
}

std::string params_text(const codec::ParamSet& p) {
  std::string out;
  for (const auto& [k, v] : p) out += (out.empty() ? "" : " ") + k + "=" + v;
  return out;
}

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_roundtrip: %s\n", what.c_str());
  std::abort();
}

int bins_M(const codec::ParamSet& p, const char* key, int fallback) {
  auto it = p.find(key);
  return (it == p.end() ? fallback : std::stoi(it->second)) / 2 - 1;
}

// Bound on |decoded - original| for every value of (layer, kind), from the
// document's quantization rule of each codec.
std::vector<float> bounds_for(const kv::KVCache& x, const std::string& codec, const codec::ParamSet& p,
                              int layer, kv::Kind kind) {
  const auto& sh = x.shape();
  const int H = sh.kv_heads, T = sh.tokens, D = sh.head_dim, C = H * D;
  const int ct = std::stoi(p.at("chunk_tokens"));
  std::vector<float> b(std::size_t(C) * T, 0.0f);  // [c][t]
  auto v = [&](int c, int t) { return x.at(layer, kind, c / D, t, c % D); };
  // Keys coded before RoPE: a pre-RoPE value is at most the norm of its
  // rotate-half pair (i, i + D/2), which RoPE keeps; the quantizer's range
  // follows that norm.
  auto ks = p.find("key_space");
  const bool pre_rope = codec == "cachegen" && kind == kv::Kind::Key && ks != p.end() &&
                        ks->second == "pre_rope" && x.info.rope_applied && D % 2 == 0;
  auto partner = [&](int c) { return c / D * D + (c % D + D / 2) % D; };
  auto range_of = [&](int c, int t) { return pre_rope ? std::hypot(v(c, t), v(partner(c), t)) : v(c, t); };
  auto per_token = [&](int M, bool per_head, bool per_chunk_channel) {
    for (int t0 = 0; t0 < T; t0 += ct) {
      const int t1 = std::min(T, t0 + ct);
      for (int t = t0; t < t1; ++t)
        for (int c = 0; c < C; ++c) {
          float amax = 0;
          if (per_chunk_channel) {
            for (int u = t0; u < t1; ++u) amax = std::max(amax, std::fabs(range_of(c, u)));
          } else {
            const int c0 = per_head ? c / D * D : 0, c1 = per_head ? c0 + D : C;
            for (int k = c0; k < c1; ++k) amax = std::max(amax, std::fabs(range_of(k, t)));
          }
          b[std::size_t(c) * T + t] = half_up(amax / float(M)) / 2;
        }
    }
  };
  if (codec == "fp16") {
    for (int c = 0; c < C; ++c)
      for (int t = 0; t < T; ++t) b[std::size_t(c) * T + t] = std::fabs(v(c, t)) * 0x1p-11f + 0x1p-25f;
  } else if (codec == "int8" || codec == "zstd") {
    per_token(127, false, false);
  } else if (codec == "int4") {
    per_token(7, false, false);
  } else if (codec == "cachegen-lmcache") {
    per_token(kind == kv::Kind::Key ? bins_M(p, "key_bins", 32) : bins_M(p, "value_bins", 32), false, false);
  } else if (codec == "cachegen") {
    const int M = kind == kv::Kind::Key ? bins_M(p, "key_bins", 24) : bins_M(p, "value_bins", 16);
    const std::string scale = p.at("scale");
    per_token(M, scale == "head", scale == "channel");
    // Centroid reconstruction (layout version 5) moves a value up to
    // reconstruction / 6 of a step from its bin's middle.
    if (auto r = p.find("reconstruction"); r != p.end())
      for (auto& bound : b) bound *= 1.0f + std::stof(r->second) / 3.0f;
    if (pre_rope) {
      // Rotating a pair back mixes the errors of its two values: at most
      // sqrt(2) x the larger, plus the rotation's float rounding.
      const std::vector<float> q = b;
      for (int c = 0; c < C; ++c)
        for (int t = 0; t < T; ++t)
          b[std::size_t(c) * T + t] =
              1.4143f * std::max(q[std::size_t(c) * T + t], q[std::size_t(partner(c)) * T + t]) +
              std::fabs(range_of(c, t)) * 0x1p-18f;
    }
  } else if (codec == "kivi2") {
    const int G = std::stoi(p.at("group_size")), R = std::stoi(p.at("residual_tokens"));
    for (int t0 = 0; t0 < T; t0 += ct) {
      const int n = std::min(ct, T - t0), nq = std::clamp(T - R - t0, 0, n);
      for (int t = t0; t < t0 + n; ++t)
        for (int c = 0; c < C; ++c) {
          if (t - t0 >= nq) {
            b[std::size_t(c) * T + t] = std::fabs(v(c, t)) * 0x1p-11f + 0x1p-25f;
            continue;
          }
          // The group: keys per channel over G tokens, values per token over G channels.
          int ta = t, tb = t + 1, ca = c, cb = c + 1;
          if (kind == kv::Kind::Key) {
            ta = t0 + (t - t0) / G * G, tb = std::min(t0 + nq, ta + G);
          } else {
            ca = c / G * G, cb = std::min(C, ca + G);
          }
          float lo = v(ca, ta), hi = lo;
          for (int u = ta; u < tb; ++u)
            for (int k = ca; k < cb; ++k) lo = std::min(lo, v(k, u)), hi = std::max(hi, v(k, u));
          const float mn = half_down(lo);
          b[std::size_t(c) * T + t] = half_up((hi - mn) / 3.0f) / 2;
        }
    }
  }
  // Float rounding of the reconstruction (a product, and kivi2's sum).
  for (int c = 0; c < C; ++c)
    for (int t = 0; t < T; ++t) b[std::size_t(c) * T + t] += std::fabs(v(c, t)) * 0x1p-21f + 0x1p-40f;
  return b;
}

}  // namespace

FuzzOutcome fuzz_roundtrip_run(std::span<const std::uint8_t> in) {
  Choices ch(in);
  const auto codecs = codec::all_codecs();
  const codec::Codec& c = *codecs[std::size_t(ch.range(0, int(codecs.size()) - 1))];
  const bool simd = ch.byte() & 1;
  const kv::CacheShape shape{ch.range(1, 3), ch.range(1, 3), ch.range(0, 40),
                             simd ? 8 * ch.range(1, 2) : ch.range(1, 12)};
  kv::KVCache x = codec::synthetic_cache(shape, ch.u32());
  const int mode = ch.range(0, 3);
  const float scale = std::ldexp(1.0f, ch.range(-20, 8));
  for (float& v : x.data()) {
    if (mode == 1) {  // fp16 bit patterns from the input (finite ones)
      const float h = half_to_float(ch.u16());
      v = std::isfinite(h) ? h : 0.0f;
    } else if (mode == 2) {
      v = 0.0f;
    } else if (mode == 3) {
      v = 1.5f;
    }
    v *= scale;
  }
  x.round_to_fp16();
  for (float& v : x.data())
    if (!std::isfinite(v)) v = 0.0f;

  codec::ParamSet p;
  p["chunk_tokens"] = std::to_string(ch.range(1, 48));
  const std::string name = c.name();
  if (name == "cachegen") {
    p["group_size"] = std::to_string(ch.range(1, 12));
    p["scale"] = std::vector<std::string>{"token", "head", "channel"}[std::size_t(ch.range(0, 2))];
    p["delta"] = std::vector<std::string>{"auto", "always", "never"}[std::size_t(ch.range(0, 2))];
    p["key_bins"] = std::to_string(ch.range(4, 256));
    p["value_bins"] = std::to_string(ch.range(4, 256));
    p["key_layer_splits"] = p["value_layer_splits"] = "";
  } else if (name == "cachegen-lmcache") {
    p["key_bins"] = std::to_string(ch.range(4, 256));
    p["value_bins"] = std::to_string(ch.range(4, 256));
    p["key_layer_splits"] = p["value_layer_splits"] = "";
  } else if (name == "kivi2") {
    p["group_size"] = std::to_string(ch.range(1, 40));
    p["residual_tokens"] = std::to_string(ch.range(0, 50));
  } else if (name == "zstd") {
    p["level"] = std::to_string(ch.range(1, 9));
  }

  return fuzz_outcome([&] {
    codec::EncodeResult enc;
    try {
      enc = c.encode(x, p, {.threads = 1, .progress = {}});
    } catch (const Error& e) {
      // Values a codec documents it cannot hold (fp16 scale overflow).
      if (e.code() == ErrorCode::InvalidArgument) return;
      throw;
    }
    codec::DecodeOptions o;
    o.threads = 1;
    kv::KVCache y;
    try {
      y = codec::decode(enc.bytes, o);
    } catch (const Error& e) {
      finding(name + ": a fresh stream does not decode: " + e.what());
    }
    if (y.shape() != x.shape()) finding(name + ": decoded shape differs");
    const auto info = codec::inspect_stream(enc.bytes);
    for (const auto& [k, v] : p)
      if (info.params.at(k) != v) finding(name + ": parameter " + k + " not recorded as given");
    // transform has no per-value bound (components below the water level
    // are dropped, docs/bitstream.md "transform"): its values must be finite.
    if (name == "transform") {
      for (float v : y.data())
        if (!std::isfinite(v)) finding("transform: a decoded value is not finite");
    }
    for (int l = 0; l < shape.layers && name != "transform"; ++l)
      for (kv::Kind k : kv::kKinds) {
        const auto b = bounds_for(x, name, info.params, l, k);
        for (int cc = 0; cc < shape.channels(); ++cc)
          for (int t = 0; t < shape.tokens; ++t) {
            const float a = x.channel_value(l, k, t, cc), d = y.channel_value(l, k, t, cc);
            const float bound = b[std::size_t(cc) * shape.tokens + t];
            if (!(std::fabs(d - a) <= bound))
              finding(name + " (" + params_text(info.params) + "): " +
                      (k == kv::Kind::Key ? "key" : "value") + " layer " + std::to_string(l) + " channel " +
                      std::to_string(cc) + " token " + std::to_string(t) + ": " + std::to_string(a) +
                      " decoded as " + std::to_string(d) + ", bound " + std::to_string(bound));
          }
      }
    // One chunk decoded alone gives the same values.
    for (std::size_t i = 0; i < info.sections.size(); ++i) {
      const auto& s = info.sections[i];
      if (s.kind != codec::SectionKind::Chunk || i % 3 != 1) continue;
      const auto chunk = codec::decode_section(enc.bytes, i, o);
      std::size_t j = 0;
      for (int h = 0; h < chunk.kv_heads; ++h)
        for (int t = 0; t < chunk.token_count; ++t)
          for (int d = 0; d < chunk.head_dim; ++d, ++j)
            if (chunk.values[j] != y.at(s.layer, s.kv, h, s.token_begin + t, d))
              finding(name + ": decode_section differs from decode");
    }
  });
}

}  // namespace kvscope::test

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::vector<std::vector<std::uint8_t>> seeds;
  for (int i = 0; i < 32; ++i) {
    std::vector<std::uint8_t> s(64);
    for (std::size_t j = 0; j < s.size(); ++j) s[j] = std::uint8_t((i * 131 + j * 29) ^ (j >> 2));
    s[3] = std::uint8_t(i);  // every codec
    seeds.push_back(s);
  }
  kvscope::test::write_fuzz_seeds(seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvscope::test::fuzz_roundtrip_run({data, size});
  return 0;
}
