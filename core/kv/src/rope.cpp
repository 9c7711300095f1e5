// SPDX-License-Identifier: Apache-2.0
#include "kvscope/kv/rope.h"

#include <cmath>
#include <map>
#include <string>

#include "kvscope/common/error.h"

namespace kvscope::kv {

std::vector<double> plain_rope_inv_freq(double theta, int head_dim) {
  require(head_dim > 0 && head_dim % 2 == 0, ErrorCode::InvalidArgument,
          "RoPE needs a positive, even head_dim (got " + std::to_string(head_dim) + ")");
  require(theta > 0 && std::isfinite(theta), ErrorCode::InvalidArgument, "RoPE theta must be positive");
  std::vector<double> f(std::size_t(head_dim / 2));
  for (int i = 0; i < head_dim / 2; ++i) f[std::size_t(i)] = 1.0 / std::pow(theta, (2.0 * i) / head_dim);
  return f;
}

std::vector<double> layer_rope_inv_freq(const CacheInfo& info, int layers, int layer, int head_dim) {
  if (info.rope_inv_freq.empty()) return plain_rope_inv_freq(info.rope_theta, head_dim);
  require(info.rope_inv_freq.size() == std::size_t(layers), ErrorCode::InvalidArgument,
          "RoPE frequency tables: " + std::to_string(info.rope_inv_freq.size()) + " for " +
              std::to_string(layers) + " layers");
  require(layer >= 0 && layer < layers, ErrorCode::InvalidArgument, "RoPE: layer out of range");
  const auto& f = info.rope_inv_freq[std::size_t(layer)];
  require(head_dim % 2 == 0 && f.size() == std::size_t(head_dim / 2), ErrorCode::InvalidArgument,
          "RoPE frequency table of layer " + std::to_string(layer) + " has " + std::to_string(f.size()) +
              " entries, head_dim/2 = " + std::to_string(head_dim / 2));
  for (double x : f)
    require(std::isfinite(x), ErrorCode::InvalidArgument,
            "RoPE frequency table of layer " + std::to_string(layer) + " holds a non-finite value");
  return f;
}

std::vector<std::int32_t> token_positions(const KVCache& cache) {
  const int T = cache.shape().tokens;
  if (cache.info.positions.size() == std::size_t(T)) return cache.info.positions;
  std::vector<std::int32_t> p(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t) p[std::size_t(t)] = t;
  return p;
}

RopeRotation::RopeRotation(std::span<const double> inv_freq, std::span<const std::int32_t> positions)
    : tokens_(int(positions.size())), pairs_(int(inv_freq.size())) {
  cos_.resize(std::size_t(tokens_) * pairs_);
  sin_.resize(cos_.size());
  for (int t = 0; t < tokens_; ++t)
    for (int i = 0; i < pairs_; ++i) {
      const double angle = double(positions[std::size_t(t)]) * inv_freq[std::size_t(i)];
      cos_[std::size_t(t) * pairs_ + i] = static_cast<float>(std::cos(angle));
      sin_[std::size_t(t) * pairs_ + i] = static_cast<float>(std::sin(angle));
    }
}

void RopeRotation::rotate(std::span<float> keys, int kv_heads, bool inverse) const {
  const std::size_t dim = std::size_t(2) * pairs_;
  require(kv_heads >= 0 && keys.size() == std::size_t(kv_heads) * tokens_ * dim, ErrorCode::InvalidArgument,
          "RoPE: key tensor size does not match heads x tokens x head_dim");
  for (int h = 0; h < kv_heads; ++h)
    for (int t = 0; t < tokens_; ++t) {
      float* x = keys.data() + (std::size_t(h) * tokens_ + t) * dim;
      const float* c = cos_.data() + std::size_t(t) * pairs_;
      const float* s = sin_.data() + std::size_t(t) * pairs_;
      for (int i = 0; i < pairs_; ++i) {
        const float x0 = x[i], x1 = x[i + pairs_];
        // Each product is its own float32 rounding (docs/bitstream.md, "RoPE").
        const float a = x0 * c[i], b = x1 * s[i], d = x1 * c[i], e = x0 * s[i];
        x[i] = inverse ? a + b : a - b;
        x[i + pairs_] = inverse ? d - e : d + e;
      }
    }
}

void RopeRotation::apply(std::span<float> keys, int kv_heads) const {
  rotate(keys, kv_heads, false);
}

void RopeRotation::remove(std::span<float> keys, int kv_heads) const {
  rotate(keys, kv_heads, true);
}

namespace {

void rotate_cache(KVCache& cache, bool inverse) {
  const auto& s = cache.shape();
  if (s.layers == 0 || s.tokens == 0) return;
  const auto positions = token_positions(cache);
  std::map<std::vector<double>, RopeRotation> rotations;  // layers sharing a table share the trig
  for (int l = 0; l < s.layers; ++l) {
    auto f = layer_rope_inv_freq(cache.info, s.layers, l, s.head_dim);
    auto it = rotations.find(f);
    if (it == rotations.end()) it = rotations.emplace(f, RopeRotation(f, positions)).first;
    if (inverse)
      it->second.remove(cache.tensor(l, Kind::Key), s.kv_heads);
    else
      it->second.apply(cache.tensor(l, Kind::Key), s.kv_heads);
  }
}

}  // namespace

void remove_rope(KVCache& cache) {
  if (!cache.info.rope_applied) return;
  rotate_cache(cache, true);
  cache.info.rope_applied = false;
}

void apply_rope(KVCache& cache) {
  if (cache.info.rope_applied) return;
  rotate_cache(cache, false);
  cache.info.rope_applied = true;
}

}  // namespace kvscope::kv
