// `kvscope-cli stream`: stream a context's KV cache chunk by chunk under a
// bandwidth profile and an SLO (core/stream), simulated or over a real TCP
// connection on 127.0.0.1, and report the loading delay.
#include <iomanip>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/raw_cache.h"
#include "kvscope/stream/streamer.h"

#if __has_include("kvscope/model/model.h")
#include "kvscope/model/model.h"
#include "kvscope/stream/model_recomputer.h"
#define KVSCOPE_STREAM_HAVE_MODEL 1
#if __has_include("kvscope/eval/quality.h")
#include "kvscope/eval/metrics.h"
#include "kvscope/eval/quality.h"
#define KVSCOPE_STREAM_HAVE_EVAL 1
#endif
#else
#define KVSCOPE_STREAM_HAVE_MODEL 0
#endif
#ifndef KVSCOPE_STREAM_HAVE_EVAL
#define KVSCOPE_STREAM_HAVE_EVAL 0
#endif

namespace kvscope::cli {
namespace {

struct Options {
  std::string model;
  std::string context;
  std::string cache;
  std::string profile;
  double slo = 0;
  std::string policy = "adaptive";
  int chunk_tokens = 1024;
  std::string ladder;
  bool simulate = false;
  double time_scale = 1.0;
  double compute_profile = 0;
  double prior_mbps = 0;
  int max_tokens = 0;
  bool quality = false;
  int continuation_tokens = 64;
  bool json = false;
};

void print_text(const stream::StreamReport& r) {
  std::cout << "policy " << r.policy << ", profile " << r.profile << ", " << r.mode << " mode, " << r.tokens
            << " tokens in " << r.chunks.size() << " chunks\n";
  if (!r.recompute.empty()) std::cout << "text recompute: " << r.recompute << "\n";
  std::cout << std::fixed << std::setprecision(3);
  std::cout
      << " chunk  level            bytes   est Mbit/s   send start    send end     arrival  decode end\n";
  for (const auto& c : r.chunks) {
    std::cout << std::setw(6) << c.index << "  " << std::left << std::setw(14) << c.level_name << std::right
              << std::setw(9) << c.wire_bytes << std::setw(13) << std::setprecision(1) << c.estimated_mbps
              << std::setprecision(3) << std::setw(13) << c.send_start_s << std::setw(12) << c.send_end_s
              << std::setw(12) << c.arrival_s << std::setw(12) << c.decode_end_s << "\n";
  }
  if (r.status != stream::StreamStatus::Ok)
    std::cout << "FAILED (" << to_string(r.status) << "): " << r.error << "\n";
  std::cout << "time to load the context: " << r.ttft_s << " s (SLO " << r.slo_s << " s "
            << (r.slo_met ? "met" : "missed") << "), " << r.bytes_sent << " bytes sent\n";
}

void run(const Options& o) {
  const auto progress = terminal_progress();
  std::shared_ptr<kv::KVCache> cache;
  std::optional<stream::Recomputer> recomputer;
  nlohmann::json source;
#if KVSCOPE_STREAM_HAVE_MODEL
  std::unique_ptr<model::Model> model;
#endif
#if KVSCOPE_STREAM_HAVE_EVAL
  std::unique_ptr<eval::Evaluator> evaluator;
  const eval::Reference* reference = nullptr;
#endif
  if (o.quality && o.context.empty())
    throw Error(ErrorCode::InvalidArgument,
                "--quality needs --context (the held-out continuation comes from it)");
  if (!o.cache.empty()) {
    cache = std::make_shared<kv::KVCache>(io::load_cache(o.cache));
    source = {{"cache", o.cache}};
  } else {
    if (o.context.empty())
      throw Error(ErrorCode::InvalidArgument, "stream needs --context FILE (or --cache FILE)");
#if KVSCOPE_STREAM_HAVE_MODEL
    model::LoadOptions lo;
    lo.progress = progress;
    model = model::Model::load(resolve_model(o.model), lo);
    const std::string text = read_file(o.context);
    std::vector<std::int32_t> ids;
    double prefill_seconds = 0;
    if (o.quality) {
#if KVSCOPE_STREAM_HAVE_EVAL
      // The evaluator's split: the cache covers x[0..N-1), and the model then
      // continues from the assembled cache over M held-out tokens.
      eval::EvalConfig ec;
      ec.max_context_tokens = o.max_tokens;
      ec.continuation_tokens = o.continuation_tokens;
      ec.greedy_tokens = 0;
      ec.progress = progress;
      evaluator = std::make_unique<eval::Evaluator>(*model, ec);
      const eval::Reference& ref = evaluator->reference(text, o.context);
      reference = &ref;
      ids.assign(ref.context_tokens.begin(), ref.context_tokens.end() - 1);
      cache = std::make_shared<kv::KVCache>(ref.cache);
      cache->info.token_ids = ids;
      prefill_seconds = ref.prefill_seconds;
#else
      throw Error(ErrorCode::Unsupported, "this build has no evaluation library (core/eval): drop --quality");
#endif
    } else {
      ids = model->tokenizer().encode(text, model->tokenizer().adds_bos());
      if (o.max_tokens > 0 && static_cast<int>(ids.size()) > o.max_tokens) ids.resize(o.max_tokens);
      if (ids.empty()) throw Error(ErrorCode::InvalidArgument, o.context, "the context has no tokens");
      model::PrefillOptions po;
      po.want_last_logits = false;
      po.progress = progress;
      auto pre = model->prefill(ids, po);
      prefill_seconds = pre.seconds;
      cache = std::make_shared<kv::KVCache>(std::move(pre.cache));
    }
    source = {{"context", o.context},
              {"model", model->config().name},
              {"prefill_seconds", prefill_seconds},
              {"device", model->device()}};
    if (o.compute_profile <= 0)
      recomputer = stream::model_recomputer(*model, ids,
                                            prefill_seconds > 0 ? double(ids.size()) / prefill_seconds : 0.0);
#else
    throw Error(ErrorCode::Unsupported, "this build has no model runtime: use --cache FILE");
#endif
  }
  if (o.compute_profile > 0) recomputer = stream::compute_profile_recomputer(cache, o.compute_profile);
  const auto ladder =
      stream::load_ladder(o.ladder.empty() ? stream::default_ladder_path() : std::filesystem::path(o.ladder));
  stream::StreamConfig cfg;
  cfg.policy = stream::parse_policy(o.policy, ladder);
  cfg.slo_s = o.slo;
  cfg.simulate = o.simulate;
  cfg.time_scale = o.time_scale;
  cfg.prior_mbps = o.prior_mbps;
  cfg.keep_assembled_cache = false;
  const auto profile = stream::resolve_profile(o.profile);

  stream::ChunkStore store(cache, o.chunk_tokens);
  stream::PrepareOptions prep;
  prep.progress = progress;
  stream::prepare_stream(store, cfg.policy, prep);
  stream::StreamHooks hooks;
  hooks.recompute = recomputer;
#if KVSCOPE_STREAM_HAVE_EVAL
  if (reference) {
    hooks.evaluate = [&](const kv::KVCache& assembled) {
      const eval::Reference& ref = *reference;
      std::vector<std::int32_t> fed{ref.context_tokens.back()};
      fed.insert(fed.end(), ref.continuation_tokens.begin(), ref.continuation_tokens.end() - 1);
      const auto logits = model->continue_logits(assembled, fed);
      const int vocab = model->config().vocab;
      const double ppl = eval::perplexity(logits, vocab, ref.continuation_tokens);
      return nlohmann::json{{"continuation_tokens", ref.continuation_tokens.size()},
                            {"ppl_ref", ref.ppl},
                            {"ppl", ppl},
                            {"delta_ppl_pct", 100.0 * (ppl - ref.ppl) / ref.ppl},
                            {"top1_agreement", eval::top1_agreement(ref.logits, logits, vocab)},
                            {"kl", eval::mean_kl(ref.logits, logits, vocab)},
                            {"max_abs_error", kv::max_abs_difference(ref.cache, assembled)}};
    };
  }
#endif
  const auto report = stream::run_stream(store, profile, cfg, hooks);
  if (o.json) {
    auto j = stream::report_to_json(report);
    j["source"] = source;
    j["ladder"] = ladder.name;
    print_json(j);
  } else {
    print_text(report);
  }
}

const CommandRegistrar stream_command(60, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("stream", "Stream a context's KV cache under a bandwidth profile and an SLO");
  cmd->add_option("--model", o->model, "model file (default: the default model)");
  cmd->add_option("--context", o->context, "text file: the context to prefill and stream");
  cmd->add_option("--cache", o->cache,
                  "stream a saved raw cache (.safetensors) instead of prefilling a context");
  cmd->add_option("--profile", o->profile, "bandwidth profile: a preset name or a .csv/.json file")
      ->required();
  cmd->add_option("--slo", o->slo, "seconds by which the whole context should be loaded")->required();
  cmd->add_option("--policy", o->policy, "adaptive | fp16 | int8 | text | fixed:LEVEL")
      ->capture_default_str();
  cmd->add_option("--chunk-tokens", o->chunk_tokens, "tokens per chunk")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--ladder", o->ladder, "codec ladder file (default: resources/ladders/default.json)");
  cmd->add_flag("--simulate", o->simulate, "simulated clock: no sockets or sleeps");
  cmd->add_option("--time-scale", o->time_scale, "real mode: profile seconds per wall second")
      ->capture_default_str();
  cmd->add_option("--compute-profile", o->compute_profile,
                  "recompute text chunks at this many tokens/s instead of with the model");
  cmd->add_option("--prior-mbps", o->prior_mbps,
                  "throughput guess for the first chunk (default: the profile's initial rate)");
  cmd->add_option("--max-tokens", o->max_tokens, "truncate the context to this many tokens");
  cmd->add_flag("--quality", o->quality,
                "measure the assembled cache's quality (perplexity, top-1, KL of a held-out continuation)");
  cmd->add_option("--continuation-tokens", o->continuation_tokens, "--quality: held-out tokens scored")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_flag("--json", o->json, "print the report as JSON");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvscope::cli
