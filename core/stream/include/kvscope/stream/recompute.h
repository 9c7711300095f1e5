#pragma once

// Text fallback: the receiver recomputes a chunk's KV from its tokens. The
// stream library stays free of libtorch, so recompute is injected: the CLI
// and GUI supply one backed by kvscope::model (measured prefill), tests and
// "what if the receiver had a bigger GPU" runs use a compute profile.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "kvscope/kv/kv_cache.h"
#include "kvscope/stream/chunk_store.h"

namespace kvscope::stream {

struct RecomputeRequest {
  ChunkRange range;                      ///< the chunk's tokens [begin, end) of the context
  std::span<const std::int32_t> tokens;  ///< its token ids (range.tokens() of them)
  /// The context's cache assembled so far, tokens [0, range.begin) (empty
  /// cache for the first chunk). Recompute attends over it.
  const kv::KVCache* preceding = nullptr;
};

struct RecomputeResult {
  kv::KVCache cache;   ///< the chunk's KV, tokens [begin, end) only
  double seconds = 0;  ///< time the receiver spends recomputing it
};

struct Recomputer {
  /// Shown in reports, e.g. "model SmolLM2-135M-Instruct (measured prefill)"
  /// or "compute profile 5000 tokens/s".
  std::string description;
  /// Recomputes one chunk; may throw kvscope::Error (reported as a decode
  /// failure of that chunk). Called from the receiver's decode worker.
  std::function<RecomputeResult(const RecomputeRequest&)> recompute;
  /// Estimated seconds to recompute `tokens` tokens after `preceding_tokens`
  /// tokens of context; may be empty (no estimate).
  std::function<double(int tokens, int preceding_tokens)> estimate_seconds;
};

/// A receiver that recomputes at a fixed rate: seconds = tokens /
/// tokens_per_s. Recomputing a context's own tokens reproduces its original
/// KV, so the chunk's cache is taken from `reference`.
/// Error(InvalidArgument) unless tokens_per_s > 0 and reference is set.
Recomputer compute_profile_recomputer(std::shared_ptr<const kv::KVCache> reference, double tokens_per_s);

}  // namespace kvscope::stream
