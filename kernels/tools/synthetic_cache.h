// SPDX-License-Identifier: Apache-2.0
#pragma once

// Deterministic synthetic KV caches for the kernel tests and benchmark.
// "Realistic" follows what real K/V caches show (docs/architecture.md,
// "CacheGen"): each channel
// has its own offset and scale (a few outlier channels much larger, as keys
// have), values drift smoothly along tokens (AR(1), so token deltas are
// narrower than values), plus small noise; stored at fp16 precision.
// "Random" is i.i.d. uniform noise, the worst case for the delta coder.

#include <cmath>
#include <cstdint>

#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels::testing {

/// splitmix64: tiny, fast, identical on every platform (unlike std:: distributions).
struct Rng {
  std::uint64_t state;
  explicit Rng(std::uint64_t seed) : state(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
  /// Approximately standard normal (sum of 4 uniforms, rescaled): cheap and smooth enough.
  float normal() {
    const float s = uniform() + uniform() + uniform() + uniform() - 2.0f;
    return s * 1.7320508f;
  }
};

enum class Pattern { Realistic, Random };

inline kv::KVCache make_cache(const kv::CacheShape& shape, Pattern pattern, std::uint64_t seed,
                              int threads = 0) {
  kv::KVCache cache(shape);
  const std::size_t tensors = static_cast<std::size_t>(shape.layers) * 2 * shape.kv_heads;
  float* data = cache.data().data();
  parallel_for(tensors, threads, [&](std::size_t i) {
    Rng rng(seed * 0x100000001b3ull + i);
    const int layer = static_cast<int>(i / (2 * shape.kv_heads));
    const bool key = (i / shape.kv_heads) % 2 == 0;
    float* base = data + i * static_cast<std::size_t>(shape.tokens) * shape.head_dim;
    for (int d = 0; d < shape.head_dim; ++d) {
      if (pattern == Pattern::Random) {
        for (int t = 0; t < shape.tokens; ++t)
          base[static_cast<std::size_t>(t) * shape.head_dim + d] = round_to_half(rng.uniform() * 4 - 2);
        continue;
      }
      // Per-channel statistics: keys have larger, more skewed channels; deeper layers grow.
      const bool outlier = rng.uniform() < 0.03f;
      const float scale =
          (key ? 1.5f : 0.6f) * (1.0f + 0.03f * layer) * (outlier ? 8.0f : 0.5f + rng.uniform());
      const float offset = key ? rng.normal() * scale * 0.5f : 0.0f;
      const float rho = 0.85f + 0.1f * rng.uniform();
      const float innovation = std::sqrt(1.0f - rho * rho);
      float state = rng.normal();
      for (int t = 0; t < shape.tokens; ++t) {
        state = rho * state + innovation * rng.normal();
        const float v = offset + scale * (0.8f * state + 0.2f * rng.normal());
        base[static_cast<std::size_t>(t) * shape.head_dim + d] = round_to_half(v);  // a fp16 cache
      }
    }
  });
  return cache;
}

}  // namespace kvscope::kernels::testing
