// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared helpers for the streaming tests: a small synthetic cache with token
// ids, a quantization ladder, and a prepared chunk store.

#include <memory>
#include <numeric>

#include "kvscope/codec/synthetic.h"
#include "kvscope/stream/streamer.h"

namespace kvscope::stream::testing {

/// 4 layers x 2 KV heads x 64 dims: 2 KiB per token at fp16.
inline std::shared_ptr<kv::KVCache> synthetic_context(int tokens, std::uint64_t seed = 7) {
  auto cache = std::make_shared<kv::KVCache>(codec::synthetic_cache({4, 2, tokens, 64}, seed));
  cache->info.token_ids.resize(tokens);
  std::iota(cache->info.token_ids.begin(), cache->info.token_ids.end(), 100);
  cache->info.positions.resize(tokens);
  std::iota(cache->info.positions.begin(), cache->info.positions.end(), 0);
  return cache;
}

inline Ladder quantization_ladder() {
  Ladder l;
  l.name = "test";
  l.levels = {{"fp16", {"fp16", {}}}, {"int8", {"int8", {}}}, {"int4", {"int4", {}}}};
  return l;
}

/// A store of `chunks` chunks of 64 tokens, encoded at fp16, int8 and int4.
inline std::shared_ptr<EncodedContext> prepared_store(int chunks = 8) {
  auto store = std::make_shared<EncodedContext>(synthetic_context(64 * chunks), 64);
  const Ladder ladder = quantization_ladder();
  prepare_stream(*store, parse_policy("adaptive", ladder));
  prepare_stream(*store,
                 parse_policy("int8", ladder));  // the int8 policy's config (same codec, cached separately)
  prepare_stream(*store, parse_policy("fp16", ladder));
  return store;
}

inline StreamConfig config_for(const std::string& policy, double slo, bool simulate) {
  StreamConfig c;
  c.policy = parse_policy(policy, quantization_ladder());
  c.slo_s = slo;
  c.simulate = simulate;
  c.model_decode_time = true;
  // 64 us per 64-token chunk: decisions do not depend on this machine's speed.
  c.modelled_decode_seconds_per_token = 1e-6;
  c.decode_threads = 1;
  return c;
}

}  // namespace kvscope::stream::testing
