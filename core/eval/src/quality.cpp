// SPDX-License-Identifier: Apache-2.0
#include "kvscope/eval/quality.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "kvscope/common/error.h"

namespace kvscope::eval {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

RoundTrip round_trip(const kv::KVCache& cache, const codec::CodecConfig& config, int threads) {
  RoundTrip rt;
  codec::EncodeOptions eo;
  eo.threads = threads;
  auto t0 = Clock::now();
  const codec::EncodeResult enc = codec::encode(cache, config, eo);
  rt.encode_seconds = since(t0);
  rt.size = enc.size;
  codec::DecodeOptions dopt;
  dopt.threads = threads;
  t0 = Clock::now();
  rt.cache = codec::decode(enc.bytes, dopt);
  rt.decode_seconds = since(t0);
  require(rt.cache.shape() == cache.shape(), ErrorCode::Internal,
          "codec '" + config.codec + "' decoded a cache of a different shape");
  return rt;
}

Evaluator::Evaluator(const model::Model& model, EvalConfig config)
    : model_(model), config_(std::move(config)) {
  require(config_.continuation_tokens >= 1, ErrorCode::InvalidArgument,
          "eval: continuation_tokens must be >= 1");
  require(config_.greedy_tokens >= 0 && config_.task_greedy_tokens >= 1, ErrorCode::InvalidArgument,
          "eval: greedy_tokens must be >= 0 and task_greedy_tokens >= 1");
  require(config_.max_context_tokens == 0 || config_.max_context_tokens >= 2, ErrorCode::InvalidArgument,
          "eval: max_context_tokens must be 0 (all) or >= 2");
}

const Reference& Evaluator::reference(const std::string& text, const std::string& label) {
  const std::string key = label + "|" + std::to_string(std::hash<std::string>{}(text)) + "|" +
                          std::to_string(config_.max_context_tokens) + "|" +
                          std::to_string(config_.continuation_tokens) + "|" +
                          std::to_string(config_.greedy_tokens);
  if (auto it = refs_.find(key); it != refs_.end()) return *it->second;

  const auto& tok = model_.tokenizer();
  const auto tokens = tok.encode(text, tok.adds_bos());
  const int M = config_.continuation_tokens;
  require(tokens.size() >= std::size_t(M) + 2, ErrorCode::InvalidArgument,
          "context '" + label + "' has " + std::to_string(tokens.size()) + " tokens; needs at least " +
              std::to_string(M + 2) + " for a " + std::to_string(M) + "-token continuation");
  int N = int(tokens.size()) - M;
  if (config_.max_context_tokens > 0) N = std::min(N, config_.max_context_tokens);

  auto ref = std::make_unique<Reference>();
  ref->label = label;
  ref->context_tokens.assign(tokens.begin(), tokens.begin() + N);
  ref->continuation_tokens.assign(tokens.begin() + N, tokens.begin() + N + M);

  report_progress(config_.progress, 0.0, "prefill " + label);
  model::PrefillOptions po;
  po.want_last_logits = false;
  po.progress = config_.progress;
  const auto t0 = Clock::now();
  auto pre = model_.prefill(std::span(ref->context_tokens).first(std::size_t(N - 1)), po);
  ref->prefill_seconds = since(t0);
  ref->cache = std::move(pre.cache);
  ref->cache.round_to_fp16();

  std::vector<std::int32_t> fed{ref->context_tokens.back()};
  fed.insert(fed.end(), ref->continuation_tokens.begin(), ref->continuation_tokens.end() - 1);
  report_progress(config_.progress, 0.5, "reference continuation " + label);
  ref->logits = model_.continue_logits(ref->cache, fed);
  ref->ppl = perplexity(ref->logits, model_.config().vocab, ref->continuation_tokens);
  if (config_.greedy_tokens > 0) {
    const std::int32_t last = ref->context_tokens.back();
    ref->greedy = model_.generate(ref->cache, std::span(&last, 1), config_.greedy_tokens);
  }
  report_progress(config_.progress, 1.0, "reference " + label);
  return *refs_.emplace(key, std::move(ref)).first->second;
}

Reference reference_from_cache(const model::Model& model, const kv::KVCache& cache, const std::string& label,
                               const EvalConfig& config) {
  const auto& tokens = cache.info.token_ids;
  const int T = cache.shape().tokens;
  require(!tokens.empty() && int(tokens.size()) == T, ErrorCode::InvalidArgument,
          "context '" + label + "': the cache has no token ids (a prefilled cache has one per token)");
  const int M = config.continuation_tokens;
  require(M >= 1 && T >= M + 2, ErrorCode::InvalidArgument,
          "context '" + label + "' has " + std::to_string(T) + " tokens; needs at least " +
              std::to_string(M + 2) + " for a " + std::to_string(M) + "-token continuation");
  int N = T - M;
  if (config.max_context_tokens > 0) N = std::min(N, config.max_context_tokens);

  Reference ref;
  ref.label = label;
  ref.context_tokens.assign(tokens.begin(), tokens.begin() + N);
  ref.continuation_tokens.assign(tokens.begin() + N, tokens.begin() + N + M);
  const auto t0 = Clock::now();
  ref.cache = cache.slice_tokens(0, N - 1);
  ref.cache.round_to_fp16();
  std::vector<std::int32_t> fed{ref.context_tokens.back()};
  fed.insert(fed.end(), ref.continuation_tokens.begin(), ref.continuation_tokens.end() - 1);
  report_progress(config.progress, 0.0, "reference continuation " + label);
  ref.logits = model.continue_logits(ref.cache, fed);
  ref.ppl = perplexity(ref.logits, model.config().vocab, ref.continuation_tokens);
  if (config.greedy_tokens > 0) {
    const std::int32_t last = ref.context_tokens.back();
    ref.greedy = model.generate(ref.cache, std::span(&last, 1), config.greedy_tokens);
  }
  ref.prefill_seconds = since(t0);
  report_progress(config.progress, 1.0, "reference " + label);
  return ref;
}

const std::vector<TaskReference>& Evaluator::task_references(const DatasetIndex& index,
                                                             const std::string& task_set) {
  const std::string key = task_set + "|" + std::to_string(config_.task_greedy_tokens);
  if (auto it = task_refs_.find(key); it != task_refs_.end()) return it->second;
  return task_refs_.emplace(key, make_task_references(load_tasks(index, task_set))).first->second;
}

std::vector<TaskReference> Evaluator::make_task_references(const std::vector<Task>& tasks) {
  const auto& tok = model_.tokenizer();
  std::vector<TaskReference> refs;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    report_progress(config_.progress, double(i) / double(tasks.size()), "task reference " + tasks[i].id);
    TaskReference r;
    r.task = tasks[i];
    const auto ctx = tok.encode(r.task.context, tok.adds_bos());
    require(!ctx.empty(), ErrorCode::Format, "task " + r.task.id + " has an empty context");
    model::PrefillOptions po;
    po.want_last_logits = false;
    r.cache = model_.prefill(ctx, po).cache;
    r.cache.round_to_fp16();  // the fp16 reference, as for contexts
    r.question = tok.encode(r.task.question, false);
    require(!r.question.empty(), ErrorCode::Format, "task " + r.task.id + " has an empty question");
    r.output = tok.decode(model_.generate(r.cache, r.question, config_.task_greedy_tokens));
    r.correct = r.output.find(r.task.answer) != std::string::npos;
    refs.push_back(std::move(r));
  }
  return refs;
}

QualityResult Evaluator::evaluate(const Reference& ref, const codec::CodecConfig& config,
                                  const std::vector<const std::vector<TaskReference>*>& tasks) {
  const auto t_start = Clock::now();
  QualityResult q;
  q.context = ref.label;
  q.config = config;
  // Report every parameter, defaults included, so CSV rows are self-describing.
  const auto& c = codec::find_codec(config.codec);
  for (const auto& spec : c.params(&ref.cache.shape()))
    if (!q.config.params.count(spec.name)) q.config.params[spec.name] = spec.default_value;

  report_progress(config_.progress, 0.0, "encode " + config.codec);
  RoundTrip rt = round_trip(ref.cache, config, config_.threads);
  q.size = rt.size;
  q.encode_seconds = rt.encode_seconds;
  q.decode_seconds = rt.decode_seconds;
  q.bits_per_element = rt.size.bits_per_element();
  q.ratio_vs_fp16 = rt.size.ratio_vs_fp16();
  q.ratio_vs_int8 = rt.size.encoded_bytes ? double(codec::int8_reference_bytes(ref.cache.shape())) /
                                                double(rt.size.encoded_bytes)
                                          : 0.0;
  q.max_abs_error = kv::max_abs_difference(ref.cache, rt.cache);
  q.context_tokens = int(ref.context_tokens.size());
  q.continuation_tokens = int(ref.continuation_tokens.size());

  report_progress(config_.progress, 0.3, "continue " + config.codec);
  std::vector<std::int32_t> fed{ref.context_tokens.back()};
  fed.insert(fed.end(), ref.continuation_tokens.begin(), ref.continuation_tokens.end() - 1);
  const auto logits = model_.continue_logits(rt.cache, fed);
  const int vocab = model_.config().vocab;
  q.ppl_ref = ref.ppl;
  q.ppl = perplexity(logits, vocab, ref.continuation_tokens);
  q.delta_ppl_pct = 100.0 * (q.ppl - q.ppl_ref) / q.ppl_ref;
  q.top1_agreement = top1_agreement(ref.logits, logits, vocab);
  q.kl = mean_kl(ref.logits, logits, vocab);
  q.token_scores = token_scores(ref.logits, logits, vocab, ref.continuation_tokens);
  if (config_.bootstrap_resamples > 0)
    q.intervals = bootstrap_intervals(q.token_scores, config_.bootstrap_resamples);
  if (!ref.greedy.empty()) {
    report_progress(config_.progress, 0.5, "generate " + config.codec);
    const std::int32_t last = ref.context_tokens.back();
    const auto greedy = model_.generate(rt.cache, std::span(&last, 1), int(ref.greedy.size()));
    std::size_t same = 0;
    while (same < greedy.size() && same < ref.greedy.size() && greedy[same] == ref.greedy[same]) ++same;
    q.greedy_match = double(same) / double(ref.greedy.size());
  } else {
    q.greedy_match = 1.0;
  }

  std::size_t n = 0, ok = 0, ok_ref = 0, total = 0;
  for (const auto* set : tasks) total += set->size();
  for (const auto* set : tasks) {
    for (const auto& tr : *set) {
      report_progress(config_.progress, 0.6 + 0.4 * double(n) / double(total), "task " + tr.task.id);
      RoundTrip trt = round_trip(tr.cache, config, config_.threads);
      TaskOutcome o;
      o.id = tr.task.id;
      o.reference_correct = tr.correct;
      o.output =
          model_.tokenizer().decode(model_.generate(trt.cache, tr.question, config_.task_greedy_tokens));
      o.correct = o.output.find(tr.task.answer) != std::string::npos;
      ++n;
      ok += o.correct;
      ok_ref += o.reference_correct;
      q.tasks.push_back(std::move(o));
    }
  }
  if (n) {
    q.task_accuracy = double(ok) / double(n);
    q.task_accuracy_ref = double(ok_ref) / double(n);
  }
  q.eval_seconds = since(t_start);
  report_progress(config_.progress, 1.0, "evaluated " + config.codec);
  return q;
}

}  // namespace kvscope::eval
