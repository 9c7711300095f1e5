// SPDX-License-Identifier: Apache-2.0
#pragma once

// What `stream`, `store put` and `serve` share: loading a context's KV cache
// (prefilled with the model, or a saved raw cache) with the token ids and the
// model hash that name it in a chunk store, so every command derives the
// same keys from the same options.

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

#if KVSCOPE_HAVE_TORCH
#include "kvscope/eval/quality.h"
#include "kvscope/model/model.h"
#endif

namespace kvscope::cli {

struct StreamContextOptions {
  std::string model, context, cache;
  int max_tokens = 0;
  /// Use the quality evaluator's split (the context minus its last token and
  /// a held-out continuation), as `stream --quality` needs.
  bool quality = false;
  int continuation_tokens = 64;
};

/// Registers --model, --context, --cache, --max-tokens on `cmd`.
void add_stream_context_options(CLI::App* cmd, StreamContextOptions& o);

struct StreamContext {
  /// What names the context in a store: model name and hash, one token id per
  /// token (info.token_ids), and the cache's shape. Always set.
  kv::CacheInfo info;
  kv::CacheShape shape;
  /// The KV cache itself (with `info`); empty when not asked for.
  std::shared_ptr<kv::KVCache> cache;
  nlohmann::json source;  ///< for reports: context, model, prefill seconds
#if KVSCOPE_HAVE_TORCH
  std::unique_ptr<model::Model> model;  ///< loaded for --context, or --cache with --model
  std::unique_ptr<eval::Evaluator> evaluator;
  const eval::Reference* reference = nullptr;  ///< quality split only
#endif
};

/// Loads the context. `need_model` also loads the model for --cache (text
/// recompute, query timing). Without `need_cache` a --context is only
/// tokenized, not prefilled (a receiver loading it from a store has the
/// tokens, not the KV); --quality always prefills. Errors name the file;
/// Error(InvalidArgument) when neither --context nor --cache is given.
StreamContext load_stream_context(const StreamContextOptions& o, bool need_model, const ProgressFn& progress,
                                  bool need_cache = true);

}  // namespace kvscope::cli
