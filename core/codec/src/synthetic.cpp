// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/synthetic.h"

#include <cmath>

namespace kvscope::codec {
namespace {

struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1) with 24-bit resolution (exact in float).
  float uniform() { return float(std::int32_t(next() >> 40) - (1 << 23)) / float(1 << 23); }
  // Approximately normal: sum of four uniforms, variance 4/3, rescaled.
  float normal() { return (uniform() + uniform() + uniform() + uniform()) * 0.8660254f; }
};

}  // namespace

kv::KVCache synthetic_cache(const kv::CacheShape& shape, std::uint64_t seed) {
  kv::KVCache cache(shape);
  cache.info.model_name = "synthetic";
  cache.info.architecture = "synthetic";
  for (int l = 0; l < shape.layers; ++l) {
    for (int k = 0; k < 2; ++k) {
      const auto kind = static_cast<kv::Kind>(k);
      const float layer_scale = (k == 0 ? 1.0f : 0.3f) * (1.0f + 0.08f * float(l));
      for (int c = 0; c < shape.channels(); ++c) {
        Rng rng{seed * 0x100000001b3ull + (std::uint64_t(l) * 2 + k) * 1000003ull + std::uint64_t(c)};
        const bool outlier = k == 0 && (rng.next() % 32) == 0;
        const float scale = layer_scale * (outlier ? 8.0f : 1.0f);
        const float mean = rng.normal() * scale;
        const float walk = scale * (0.04f + 0.08f * (float(rng.next() % 1000) / 1000.0f));
        const float noise = scale * 0.05f;
        float x = 0;
        for (int t = 0; t < shape.tokens; ++t) {
          x = 0.98f * x + walk * rng.normal();
          cache.channel_value(l, kind, t, c) = mean + x + noise * rng.normal();
        }
      }
    }
  }
  cache.round_to_fp16();
  return cache;
}

}  // namespace kvscope::codec
