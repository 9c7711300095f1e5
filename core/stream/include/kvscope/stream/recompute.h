// SPDX-License-Identifier: Apache-2.0
#pragma once

// The receiver's own compute in the delay model (docs/streaming.md, "Delay
// model"): text chunks it recomputes, and the query it runs once the context
// is loaded. The stream library stays free of libtorch, so both are injected:
// the CLI and the app supply ones backed by kvscope::model
// (model_recomputer.h); tests and "what if the receiver were faster" runs use
// a fixed recompute rate.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "kvscope/kv/kv_cache.h"
#include "kvscope/stream/encoded_context.h"

namespace kvscope::stream {

/// How fast the receiver computes: measured on this machine (e.g.
/// measure_recompute_rate() in model_recomputer.h) or edited by the user.
struct RecomputeRate {
  double tokens_per_s = 0;   ///< prefill speed over an existing cache (text chunks, the query)
  double first_token_s = 0;  ///< one decode step (the first generated token)
  std::string source;        ///< e.g. "measured: SmolLM2-135M-Instruct on cpu" or "edited"
};

struct RecomputeRequest {
  ChunkRange range;                      ///< the chunk's tokens [begin, end) of the context
  std::span<const std::int32_t> tokens;  ///< its token ids (range.tokens() of them)
  /// The cache the receiver holds so far, tokens [0, range.begin): the
  /// decoded, lossy chunks and earlier recomputed ones (an empty cache for
  /// the first chunk). Recompute attends over it, as a serving engine
  /// extending its cache would.
  const kv::KVCache* preceding = nullptr;
};

struct RecomputeResult {
  kv::KVCache cache;   ///< the chunk's KV, tokens [begin, end) only
  double seconds = 0;  ///< time charged for recomputing it
};

struct Recomputer {
  /// Shown in reports, e.g. "model SmolLM2-135M-Instruct over the decoded
  /// prefix, charged at 2100 tokens/s (measured)".
  std::string description;
  /// Recomputes one chunk; may throw kvscope::Error (reported as a decode
  /// failure of that chunk). Called from the receiver's decode worker.
  std::function<RecomputeResult(const RecomputeRequest&)> recompute;
  /// Estimated seconds to recompute `tokens` tokens after `preceding_tokens`
  /// tokens of context; may be empty (no estimate).
  std::function<double(int tokens, int preceding_tokens)> estimate_seconds;
};

/// The query that follows the context: its prefill over the loaded context
/// and the first generated token are part of TTFT.
struct QueryCost {
  int tokens = 0;            ///< query tokens
  double prefill_s = 0;      ///< estimate, budgeted by the policy
  double first_token_s = 0;  ///< estimate, budgeted by the policy
  std::string description;   ///< how the estimates were made
  /// When set, runs the query over the assembled cache after a successful
  /// run and returns the measured {prefill seconds, first-token seconds},
  /// which replace the estimates in the report.
  std::function<std::pair<double, double>(const kv::KVCache& assembled)> measure;
};

/// A query of `tokens` tokens charged at `rate` (no measurement).
/// Error(InvalidArgument) unless tokens >= 0 and rate.tokens_per_s > 0.
QueryCost query_at_rate(int tokens, const RecomputeRate& rate);

/// A receiver that recomputes at a fixed rate: seconds = tokens /
/// tokens_per_s. With no model at hand it cannot run the recompute, so it
/// takes the chunk's KV from `reference` (the original cache): quality of
/// text chunks is then the exact prefix's, better than a real receiver's.
/// Error(InvalidArgument) unless tokens_per_s > 0 and reference is set.
Recomputer fixed_rate_recomputer(std::shared_ptr<const kv::KVCache> reference, double tokens_per_s);

}  // namespace kvscope::stream
