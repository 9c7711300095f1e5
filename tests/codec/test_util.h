// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/fp16.h"

namespace kvscope::codec::test {

/// A made-up layer sensitivity of `layers` layers, for tests of where one is
/// kept and read (not of plans): key increases falling 10x per layer, value
/// increases rising.
inline LayerSensitivity example_sensitivity(int layers) {
  LayerSensitivity s;
  s.layers = layers;
  s.base_bins = 32;
  s.coarse_bins = 10;
  s.base_kl = 0.01;
  for (int l = 0; l < layers; ++l) {
    s.key_kl.push_back(0.02 / std::pow(10.0, l));
    s.value_kl.push_back(0.0005 * (l + 1));
  }
  s.params = "sinks=1";
  s.contexts = {"ctx"};
  s.context_tokens = 24;
  s.scored_tokens = 8;
  return s;
}

inline kv::CacheShape small_shape() {
  return {3, 2, 37, 8};
}

/// The fp16 step int8/int4 use for a row with this absmax.
inline float int_step(float amax, int M) {
  const float v = amax / float(M);
  std::uint16_t h = float_to_half(v);
  if (half_to_float(h) < v) ++h;
  return half_to_float(h);
}

/// The step of token t of (layer, kind) quantized per token over all
/// channels with M levels each side (int8/int4, cachegen scale=token).
inline float token_step(const kv::KVCache& cache, int layer, kv::Kind kind, int t, int M) {
  float amax = 0;
  for (int c = 0; c < cache.shape().channels(); ++c)
    amax = std::max(amax, std::fabs(cache.channel_value(layer, kind, t, c)));
  return int_step(amax, M);
}

/// FNV-1a over the float bits, for expected-cache hashes.
inline std::uint64_t hash_values(std::span<const float> v) {
  std::uint64_t h = 1469598103934665603ull;
  for (float f : v) {
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    for (int i = 0; i < 4; ++i) {
      h ^= (b >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  return h;
}

}  // namespace kvscope::codec::test

#include <vector>

#include "kvscope/codec/bitstream.h"
#include "kvscope/common/crc32c.h"

namespace kvscope::codec::test {

/// Recomputes the header CRC and every section CRC it can find, so tampered
/// fields reach the decoders' own validation instead of stopping at the CRC.
/// Walks leniently: stops at the first section that does not fit.
inline void reseal(std::vector<std::uint8_t>& b) {
  auto rd32 = [&](std::size_t o) {
    return std::uint32_t(b[o]) | std::uint32_t(b[o + 1]) << 8 | std::uint32_t(b[o + 2]) << 16 |
           std::uint32_t(b[o + 3]) << 24;
  };
  auto wr32 = [&](std::size_t o, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[o + i] = std::uint8_t(v >> (8 * i));
  };
  if (b.size() < 16) return;
  const std::uint64_t body = rd32(8);
  if (16 + body > b.size() || body < 4) return;
  wr32(12, crc32c({b.data() + 16, std::size_t(body)}));
  std::size_t pos = 16 + body;
  while (pos + 24 <= b.size()) {
    const std::uint64_t len = rd32(pos + 16);
    if (pos + 24 + len > b.size()) return;
    wr32(pos + 20, crc32c({b.data() + pos + 24, std::size_t(len)}, crc32c({b.data() + pos, 20})));
    pos += 24 + len;
  }
}

/// Deterministic mutations of a valid stream: bit flips, truncations,
/// tampered bytes with checksums resealed.
inline std::vector<std::vector<std::uint8_t>> mutations(const std::vector<std::uint8_t>& valid, int count,
                                                        std::uint64_t seed) {
  std::vector<std::vector<std::uint8_t>> out;
  std::uint64_t s = seed;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return s >> 33;
  };
  for (int i = 0; i < count; ++i) {
    auto m = valid;
    switch (i % 4) {
      case 0:
        m[next() % m.size()] ^= std::uint8_t(1u << (next() % 8));
        break;
      case 1:
        m.resize(next() % m.size());
        break;
      case 2:  // tamper and reseal: reaches the codec decoders
        for (int k = 0; k < 1 + int(next() % 3); ++k)
          m[next() % m.size()] ^= std::uint8_t(1u << (next() % 8));
        reseal(m);
        break;
      case 3:  // overwrite a byte of the header region, resealed
        m[next() % std::min<std::size_t>(m.size(), 200)] = std::uint8_t(next());
        reseal(m);
        break;
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace kvscope::codec::test
