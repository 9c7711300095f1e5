// SPDX-License-Identifier: Apache-2.0
#include "stream_context.h"

#include "cli_util.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/raw_cache.h"

#if KVSCOPE_HAVE_TORCH
#include "kvscope/eval/dataset.h"
#endif

namespace kvscope::cli {

void add_stream_context_options(CLI::App* cmd, StreamContextOptions& o) {
  cmd->add_option("--model", o.model, "model file (default: the default model)");
  cmd->add_option("--context", o.context,
                  "the context: a text file or a dataset id (prefilled with the model)");
  cmd->add_option(
      "--cache", o.cache,
      "a saved raw cache (.safetensors) instead of --context; without token ids no chunk goes as text");
  cmd->add_option("--max-tokens", o.max_tokens, "truncate the context to this many tokens (0 = all)")
      ->capture_default_str();
}

StreamContext load_stream_context(const StreamContextOptions& o, bool need_model, const ProgressFn& progress,
                                  bool need_cache) {
  StreamContext s;
  if (!o.cache.empty()) {
    s.cache = std::make_shared<kv::KVCache>(io::load_cache(o.cache));
    if (o.max_tokens > 0 && s.cache->shape().tokens > o.max_tokens)
      s.cache = std::make_shared<kv::KVCache>(s.cache->slice_tokens(0, o.max_tokens));
    // Without token ids a store names the context by its values
    // (chunk_key.h), and text chunks cannot be recomputed.
    if (!s.cache->info.token_ids.empty() &&
        static_cast<int>(s.cache->info.token_ids.size()) != s.cache->shape().tokens)
      throw Error(ErrorCode::Format, o.cache, "the cache has token ids for only some of its tokens");
    s.source = {{"cache", o.cache}, {"model", s.cache->info.model_name}};
    s.info = s.cache->info;
    s.shape = s.cache->shape();
#if KVSCOPE_HAVE_TORCH
    if (need_model) {
      model::LoadOptions lo;
      lo.progress = progress;
      s.model = model::Model::load(resolve_model(o.model), lo);
    }
#else
    (void)need_model;
#endif
    return s;
  }
  if (o.context.empty())
    throw Error(ErrorCode::InvalidArgument, "needs --context (a text file or dataset id) or --cache FILE");
#if KVSCOPE_HAVE_TORCH
  model::LoadOptions lo;
  lo.progress = progress;
  s.model = model::Model::load(resolve_model(o.model), lo);
  std::string label;
  const std::string text = eval::load_context_text(o.context, &label);
  double prefill_seconds = 0;
  if (!need_cache && !o.quality) {
    auto ids = s.model->tokenizer().encode(text, s.model->tokenizer().adds_bos());
    if (o.max_tokens > 0 && static_cast<int>(ids.size()) > o.max_tokens) ids.resize(o.max_tokens);
    if (ids.empty()) throw Error(ErrorCode::InvalidArgument, o.context, "the context has no tokens");
    const auto& c = s.model->config();
    // What prefill() would have put in the cache's info (model.h).
    s.info.model_name = c.name;
    s.info.architecture = c.architecture;
    s.info.model_sha256 = s.model->file_sha256();
    s.info.rope_theta = c.rope_theta;
    s.info.token_ids = std::move(ids);
    s.shape = {c.layers, c.kv_heads, static_cast<int>(s.info.token_ids.size()), c.head_dim};
    s.source = {
        {"context", o.context}, {"model", c.name}, {"prefilled", false}, {"device", s.model->device()}};
    return s;
  }
  if (o.quality) {
    // The evaluator's split: the cache covers x[0..N-1), and the model then
    // continues from the assembled cache over M held-out tokens.
    eval::EvalConfig ec;
    ec.max_context_tokens = o.max_tokens;
    ec.continuation_tokens = o.continuation_tokens;
    ec.greedy_tokens = 0;
    ec.progress = progress;
    s.evaluator = std::make_unique<eval::Evaluator>(*s.model, ec);
    const eval::Reference& ref = s.evaluator->reference(text, label);
    s.reference = &ref;
    s.cache = std::make_shared<kv::KVCache>(ref.cache);
    s.cache->info.token_ids.assign(ref.context_tokens.begin(), ref.context_tokens.end() - 1);
    prefill_seconds = ref.prefill_seconds;
  } else {
    auto ids = s.model->tokenizer().encode(text, s.model->tokenizer().adds_bos());
    if (o.max_tokens > 0 && static_cast<int>(ids.size()) > o.max_tokens) ids.resize(o.max_tokens);
    if (ids.empty()) throw Error(ErrorCode::InvalidArgument, o.context, "the context has no tokens");
    model::PrefillOptions po;
    po.want_last_logits = false;
    po.progress = progress;
    auto pre = s.model->prefill(ids, po);
    prefill_seconds = pre.seconds;
    s.cache = std::make_shared<kv::KVCache>(std::move(pre.cache));
  }
  // The model file's hash names the model in store keys (chunk_key.h).
  s.cache->info.model_sha256 = s.model->file_sha256();
  s.info = s.cache->info;
  s.shape = s.cache->shape();
  s.source = {{"context", o.context},
              {"model", s.model->config().name},
              {"prefill_seconds", prefill_seconds},
              {"device", s.model->device()}};
  return s;
#else
  (void)need_model;
  throw Error(ErrorCode::Unsupported, "this build has no model runtime: use --cache FILE");
#endif
}

}  // namespace kvscope::cli
