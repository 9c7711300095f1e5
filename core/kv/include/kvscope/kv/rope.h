// SPDX-License-Identifier: Apache-2.0
#pragma once

// Rotary position embedding (RoPE) on cached keys: remove it before coding
// (pre-RoPE keys are mostly a constant offset per channel, which per-channel
// models absorb) and re-apply it after decoding, at each token's position.
//
// Layout: KVScope's runtime keeps keys in the rotate-half layout, so pair i of
// a head is (dim i, dim i + head_dim/2), i < head_dim/2. The exact float
// operations are fixed so every decoder (C++, CUDA, the Python reference)
// reproduces them bit for bit; docs/bitstream.md ("RoPE") repeats them:
//   angle = double(position) * inv_freq[i]                   binary64 product
//   c = float(cos(angle)), s = float(sin(angle))              binary64, rounded once
//   apply:  x0' = x0*c - x1*s,  x1' = x1*c + x0*s             float32, no FMA
//   remove: x0' = x0*c + x1*s,  x1' = x1*c - x0*s
// Removing then applying returns the input within a few float32 ulps, not
// exactly: codecs that must be exact keep those values in the original domain.

#include <cstdint>
#include <span>
#include <vector>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::kv {

/// Plain RoPE frequencies: inv_freq[i] = 1 / theta^(2i/head_dim) in binary64
/// (std::pow), i < head_dim/2. Error(InvalidArgument) when head_dim is odd or
/// not positive, or theta is not positive.
std::vector<double> plain_rope_inv_freq(double theta, int head_dim);

/// Layer `layer`'s inverse frequencies: info.rope_inv_freq[layer] when that
/// table is present, else plain RoPE from info.rope_theta. Error(InvalidArgument)
/// when the table exists but is not one entry per layer of head_dim/2 values,
/// or a frequency is not finite.
std::vector<double> layer_rope_inv_freq(const CacheInfo& info, int layers, int layer, int head_dim);

/// Token positions of a cache: info.positions when it has one per token,
/// else 0..tokens-1.
std::vector<std::int32_t> token_positions(const KVCache& cache);

/// The cos/sin of every (token, pair) for one frequency table and a run of
/// positions, computed once and applied to any number of heads and layers.
class RopeRotation {
 public:
  /// Preconditions: inv_freq has head_dim/2 entries (any size >= 1 accepted).
  RopeRotation(std::span<const double> inv_freq, std::span<const std::int32_t> positions);

  int tokens() const { return tokens_; }
  int pairs() const { return pairs_; }

  /// Rotates keys laid out [kv_heads][tokens()][2*pairs()] in place.
  /// Error(InvalidArgument) when keys.size() != kv_heads * tokens() * 2 * pairs().
  void apply(std::span<float> keys, int kv_heads) const;
  /// The inverse rotation (see the file comment for the exact operations).
  void remove(std::span<float> keys, int kv_heads) const;

 private:
  void rotate(std::span<float> keys, int kv_heads, bool inverse) const;
  int tokens_ = 0, pairs_ = 0;
  std::vector<float> cos_, sin_;  // [token][pair]
};

/// Removes RoPE from every layer's keys (rope_applied must be true; the cache
/// is left unchanged when it is already false) and sets info.rope_applied =
/// false. Layers sharing a frequency table share one RopeRotation.
void remove_rope(KVCache& cache);
/// Applies RoPE to every layer's keys (when rope_applied is false) and sets
/// info.rope_applied = true.
void apply_rope(KVCache& cache);

}  // namespace kvscope::kv
