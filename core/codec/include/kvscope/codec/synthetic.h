// SPDX-License-Identifier: Apache-2.0
#pragma once

// A deterministic synthetic KV cache with realistic statistics, for tests,
// benchmarks and golden files when no model is at hand: per channel a smooth
// random walk around a channel mean (token locality), a few outlier channels
// with large magnitude (as real keys have), and a scale that grows with depth.

#include <cstdint>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::codec {

/// Same shape and seed give bit-identical values on every platform (integer
/// PRNG, no libm calls). Values are rounded to fp16 like a real cache.
/// Error(InvalidArgument) for a shape with a negative dimension.
kv::KVCache synthetic_cache(const kv::CacheShape& shape, std::uint64_t seed = 1);

}  // namespace kvscope::codec
