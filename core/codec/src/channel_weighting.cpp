// SPDX-License-Identifier: Apache-2.0
// cachegen's channel weighting: from measured weights to per-channel step
// scales and bins factors, and its calibration section (docs/bitstream.md).
#include "kvscope/codec/channel_weighting.h"

#include <algorithm>
#include <cmath>

#include "byte_io.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kv/rope.h"

namespace kvscope::codec::calibration {
namespace {

constexpr std::uint16_t kSectionVersion = 1;
constexpr int kMaxDimension = 1 << 20;

// Gains (w / geometric mean)^(power / 2) of one (layer, kind), as the f16
// scales 1 / gain that travel, and back as the exact gains coders use.
void layer_scales(std::span<const float> w, double power, std::span<std::uint16_t> scale,
                  std::span<double> gain) {
  const std::size_t C = w.size();
  double mean = 0;
  for (float x : w) mean += x;
  mean /= double(C);
  const double floor = std::max(1e-4 * mean, 1e-30);
  double log_sum = 0;
  for (float x : w) log_sum += std::log(std::max<double>(x, floor));
  const double log_gm = log_sum / double(C);
  for (std::size_t c = 0; c < C; ++c) {
    const double g =
        power > 0 ? std::exp(0.5 * power * (std::log(std::max<double>(w[c], floor)) - log_gm)) : 1.0;
    scale[c] = float_to_half(float(1.0 / g));
    gain[c] = 1.0 / double(half_to_float(scale[c]));
  }
}

}  // namespace

ChannelWeighting build_channel_weighting(std::span<const kv::KVCache> caches,
                                         std::span<const float> key_weight,
                                         std::span<const float> value_weight, double key_power,
                                         double value_power) {
  if (caches.empty()) throw Error(ErrorCode::InvalidArgument, "channel weighting needs at least one cache");
  const auto sh = caches[0].shape();
  const int L = sh.layers, C = sh.channels();
  if (key_weight.size() != std::size_t(L) * C || value_weight.size() != std::size_t(L) * C)
    throw Error(ErrorCode::InvalidArgument, "channel weighting: weights do not match the caches' shape (" +
                                                std::to_string(L) + " layers x " + std::to_string(C) +
                                                " channels)");
  for (const auto& c : caches)
    if (c.shape().layers != L || c.shape().kv_heads != sh.kv_heads || c.shape().head_dim != sh.head_dim)
      throw Error(ErrorCode::InvalidArgument,
                  "channel weighting: caches differ in layers, kv_heads or head_dim");
  for (double p : {key_power, value_power})
    if (!(p >= 0 && p <= 1))
      throw Error(ErrorCode::InvalidArgument, "channel weighting: powers must be in [0, 1]");
  for (auto ws : {key_weight, value_weight})
    for (float x : ws)
      if (!std::isfinite(x) || x < 0)
        throw Error(ErrorCode::InvalidArgument, "channel weighting: a weight is negative or not finite");

  ChannelWeighting w;
  w.layers = L;
  w.channels = C;
  w.key_power = key_power;
  w.value_power = value_power;
  w.key_weight.assign(key_weight.begin(), key_weight.end());
  w.value_weight.assign(value_weight.begin(), value_weight.end());
  w.scale.resize(std::size_t(L) * 2 * C);
  w.bins_factor.assign(std::size_t(L) * 2, 1.0f);
  std::vector<double> gain(std::size_t(L) * 2 * C);
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < 2; ++k) {
      const std::size_t at = (std::size_t(l) * 2 + k) * C;
      layer_scales((k == 0 ? key_weight : value_weight).subspan(std::size_t(l) * C, C),
                   k == 0 ? key_power : value_power, std::span(w.scale).subspan(at, C),
                   std::span(gain).subspan(at, C));
    }

  // Bins factors, measured on keys before RoPE (what key_space=pre_rope codes).
  std::vector<double> log_ratio(std::size_t(L) * 2, 0.0);
  std::size_t tokens = 0;
  for (const auto& input : caches) {
    kv::KVCache pre;
    const kv::KVCache* cache = &input;
    if (input.info.rope_applied && sh.head_dim % 2 == 0) {
      pre = input;
      kv::remove_rope(pre);
      cache = &pre;
    }
    const int T = input.shape().tokens, D = sh.head_dim, H = sh.kv_heads;
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < 2; ++k) {
        const auto t = cache->tensor(l, kv::Kind(k));
        const double* g = gain.data() + (std::size_t(l) * 2 + k) * C;
        for (int tok = 1; tok < T; ++tok) {
          double plain = 0, weighted = 0;
          for (int h = 0; h < H; ++h)
            for (int d = 0; d < D; ++d) {
              const double x = std::fabs(double(t[(std::size_t(h) * T + tok) * D + d]));
              plain = std::max(plain, x);
              weighted = std::max(weighted, x * g[h * D + d]);
            }
          if (plain > 0 && weighted > 0) log_ratio[std::size_t(l) * 2 + k] += std::log(weighted / plain);
        }
      }
    tokens += std::size_t(std::max(T - 1, 0));
  }
  for (int lk = 0; lk < 2 * L; ++lk) {
    if (!w.weights_kind(lk % 2) || tokens == 0) continue;
    double log_gm = 0;
    for (int c = 0; c < C; ++c) log_gm += std::log(gain[std::size_t(lk) * C + c]);
    log_gm /= C;
    const double f = std::exp(log_ratio[std::size_t(lk)] / double(tokens) - log_gm);
    w.bins_factor[std::size_t(lk)] = float(std::clamp(f, 1.0 / 64, 64.0));
  }
  return w;
}

std::vector<std::uint8_t> serialize_channel_weighting(const ChannelWeighting& w) {
  std::vector<std::uint8_t> out;
  detail::ByteWriter b(out);
  b.u16(kSectionVersion);
  b.u32(std::uint32_t(w.layers));
  b.u32(std::uint32_t(w.channels));
  b.f64(w.key_power);
  b.f64(w.value_power);
  for (float x : w.key_weight) b.f32(x);
  for (float x : w.value_weight) b.f32(x);
  for (auto s : w.scale) b.u16(s);
  for (float f : w.bins_factor) b.f32(f);
  return out;
}

ChannelWeighting parse_channel_weighting(std::span<const std::uint8_t> bytes, const std::string& label) {
  detail::ByteReader r(bytes, label + ": section " + kChannelWeightingSection);
  if (const auto v = r.u16(); v != kSectionVersion) r.fail("unknown version " + std::to_string(v));
  ChannelWeighting w;
  const auto layers = r.u32(), channels = r.u32();
  if (layers == 0 || channels == 0 || layers > kMaxDimension || channels > kMaxDimension)
    r.fail("bad layer or channel count");
  w.layers = int(layers);
  w.channels = int(channels);
  w.key_power = r.f64();
  w.value_power = r.f64();
  if (!(w.key_power >= 0 && w.key_power <= 1) || !(w.value_power >= 0 && w.value_power <= 1))
    r.fail("powers outside [0, 1]");
  const std::size_t n = std::size_t(layers) * channels;
  r.need(n * (4 + 4 + 2 * 2) + std::size_t(layers) * 2 * 4);
  w.key_weight.resize(n);
  w.value_weight.resize(n);
  for (auto& x : w.key_weight) x = r.f32();
  for (auto& x : w.value_weight) x = r.f32();
  w.scale.resize(2 * n);
  for (auto& s : w.scale) {
    s = r.u16();
    const float v = half_to_float(s);
    if (!std::isfinite(v) || !(v > 0)) r.fail("a channel scale is not finite and > 0");
  }
  w.bins_factor.resize(std::size_t(layers) * 2);
  for (auto& f : w.bins_factor) {
    f = r.f32();
    if (!std::isfinite(f) || f < 1.0f / 64 || f > 64.0f) r.fail("a bins factor is outside [1/64, 64]");
  }
  if (r.remaining() != 0) r.fail("trailing bytes");
  return w;
}

}  // namespace kvscope::codec::calibration
