// SPDX-License-Identifier: Apache-2.0
#pragma once

// Quality of a decoded KV cache (docs/architecture.md, "Quality, size and
// delay"): the model continues
// from the decoded cache and from the original one, and the two are compared.
//
// Split of a context's tokens x[0..N+M) (N context tokens, M continuation):
//   the cache covers x[0..N-1); the model is then fed x[N-1], x[N..N+M-1)
//   (teacher forcing), so the M logit rows predict exactly the M continuation
//   tokens x[N..N+M): every continuation token is scored, the first one too.
// Metrics, each over those M rows:
//   ppl            exp(mean negative log-likelihood of the continuation)
//   delta_ppl_pct  100 * (ppl - ppl_ref) / ppl_ref
//   top1_agreement fraction of rows whose argmax equals the reference's
//   kl             mean KL(P_ref || P) in nats over rows
//   greedy_match   length of the common prefix of the greedy generations
//                  (G tokens after x[N-1]) divided by G
// Task accuracy: a task's context is prefilled, compressed and decoded; the
// question is fed and G_task tokens are generated greedily; the task counts
// as solved when the answer string occurs in the decoded output.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/common/progress.h"
#include "kvscope/eval/dataset.h"
#include "kvscope/eval/metrics.h"
#include "kvscope/eval/token_scores.h"
#include "kvscope/kv/kv_cache.h"
#include "kvscope/model/model.h"

namespace kvscope::eval {

struct EvalConfig {
  /// Context tokens N kept (from the start of the text); 0 = all the text
  /// leaves after the continuation.
  int max_context_tokens = 0;
  int continuation_tokens = 64;    ///< M, >= 1
  int greedy_tokens = 32;          ///< G, >= 0
  int task_greedy_tokens = 8;      ///< tokens generated per retrieval task
  int threads = 0;                 ///< codec threads (0 = all)
  int bootstrap_resamples = 1000;  ///< resamples of QualityResult::intervals; 0 = skip
  ProgressFn progress;
};

/// What the original cache gives; computed once per (context, split) and reused.
struct Reference {
  std::string label;
  std::vector<std::int32_t> context_tokens;       ///< x[0..N)
  std::vector<std::int32_t> continuation_tokens;  ///< x[N..N+M)
  /// Covers x[0..N-1), rounded to fp16: the reference is the fp16 cache a
  /// serving stack keeps (docs/architecture.md), so the fp16 codec is lossless against it.
  kv::KVCache cache;
  std::vector<float> logits;         ///< [M x vocab] from the original cache
  std::vector<std::int32_t> greedy;  ///< G tokens from the original cache
  double ppl = 0;
  double prefill_seconds = 0;
};

struct TaskReference {
  Task task;
  kv::KVCache cache;                   ///< prefill of the task's context
  std::vector<std::int32_t> question;  ///< question tokens
  std::string output;                  ///< greedy output from the original cache
  bool correct = false;
};

struct TaskOutcome {
  std::string id;
  bool reference_correct = false;
  bool correct = false;
  std::string output;
};

struct QualityResult {
  std::string context;
  codec::CodecConfig config;
  codec::SizeReport size;
  double bits_per_element = 0, ratio_vs_fp16 = 0, ratio_vs_int8 = 0;
  int context_tokens = 0, continuation_tokens = 0;
  double ppl_ref = 0, ppl = 0, delta_ppl_pct = 0;
  double top1_agreement = 0, kl = 0, greedy_match = 0;
  double max_abs_error = 0;  ///< largest |decoded - original| over the cache
  /// The M continuation tokens' own scores, and bootstrap intervals of the
  /// summary metrics over them (EvalConfig::bootstrap_resamples; 0 = none).
  TokenScores token_scores;
  QualityIntervals intervals;
  double encode_seconds = 0, decode_seconds = 0, eval_seconds = 0;
  /// Retrieval tasks (empty unless tasks were evaluated).
  std::vector<TaskOutcome> tasks;
  double task_accuracy = 0, task_accuracy_ref = 0;
};

/// Evaluates codec configurations against references it computes once and keeps.
/// Not thread-safe: use one Evaluator per thread.
class Evaluator {
 public:
  /// `model` must outlive the evaluator.
  Evaluator(const model::Model& model, EvalConfig config);

  const EvalConfig& config() const { return config_; }

  /// The reference for a context text (tokenized with the model's
  /// tokenizer), computed on first use and cached by (text, split).
  /// Error(InvalidArgument) when the text has fewer than M + 2 tokens.
  const Reference& reference(const std::string& text, const std::string& label);

  /// References for a task set (prefilled once, cached by task set id).
  const std::vector<TaskReference>& task_references(const DatasetIndex& index, const std::string& task_set);
  /// References for the given tasks (not cached): prefill, question, greedy output.
  std::vector<TaskReference> make_task_references(const std::vector<Task>& tasks);

  /// Encodes ref.cache with `config`, decodes it, and measures the metrics
  /// above; with `tasks`, also the retrieval accuracy over them. Errors from
  /// the codec (bad parameters) propagate; Error(Cancelled) from progress.
  QualityResult evaluate(const Reference& ref, const codec::CodecConfig& config,
                         const std::vector<const std::vector<TaskReference>*>& tasks = {});

 private:
  const model::Model& model_;
  EvalConfig config_;
  std::map<std::string, std::unique_ptr<Reference>> refs_;
  std::map<std::string, std::vector<TaskReference>> task_refs_;
};

/// The reference of a context whose cache is already computed: `cache`
/// covers every token of the context (cache.info.token_ids, one per token,
/// as a prefill leaves them), so its first N-1 tokens are exactly the
/// reference cache (attention is causal) and no second prefill is needed.
/// Split, continuation and greedy tokens follow `config` as reference()
/// does. Error(InvalidArgument) without token ids or with fewer than M + 2
/// tokens; Error(Cancelled) from config.progress.
Reference reference_from_cache(const model::Model& model, const kv::KVCache& cache, const std::string& label,
                               const EvalConfig& config);

/// A codec configuration decoded back to a cache, with its size and timing.
struct RoundTrip {
  kv::KVCache cache;
  codec::SizeReport size;
  double encode_seconds = 0, decode_seconds = 0;
};
RoundTrip round_trip(const kv::KVCache& cache, const codec::CodecConfig& config, int threads);

}  // namespace kvscope::eval
