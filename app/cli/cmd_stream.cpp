// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli stream`: load a context's KV cache chunk by chunk under a
// bandwidth trace and a TTFT SLO (core/stream), simulated or for real, from a
// chunk store (--store: Redis, a folder, a `kvscope-cli serve` sender) or
// from an in-process sender, and report the time to first token with its
// parts (docs/streaming.md).
#include <iomanip>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/common/paths.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/streamer.h"
#include "stream_context.h"

#if KVSCOPE_HAVE_TORCH
#include "kvscope/eval/metrics.h"
#include "kvscope/stream/model_recomputer.h"
#endif

namespace kvscope::cli {
namespace {

/// The query asked after the context when --query is not given (with a model).
constexpr const char* kDefaultQuery = "\n\nQuestion: What is the text above about?\nAnswer:";

struct Options {
  StreamContextOptions context;
  std::string trace;
  double slo = 0;
  std::string policy = "adaptive";
  int chunk_tokens = 1024;
  std::string ladder;
  bool simulate = false;
  double time_scale = 1.0;
  double recompute_rate = 0;
  double decode_rate = 0;
  double first_token_s = -1;
  std::string query;
  int query_tokens = -1;
  double prior_mbps = 0;
  std::string store;
  double store_timeout = 5.0;
  bool json = false;
};

void print_text(const stream::StreamReport& r) {
  std::cout << "policy " << r.policy << ", trace " << r.profile << ", " << r.mode << " mode, " << r.tokens
            << " tokens in " << r.chunks.size() << " chunks from " << r.store << "\n";
  if (!r.recompute.empty()) std::cout << "text recompute: " << r.recompute << "\n";
  std::cout << std::fixed << std::setprecision(3);
  std::cout << " chunk  level            bytes   est Mbit/s  fetch start     arrival  decode s  decode end\n";
  for (const auto& c : r.chunks) {
    std::cout << std::setw(6) << c.index << "  " << std::left << std::setw(14) << c.level_name << std::right
              << std::setw(9) << c.wire_bytes << std::setw(13) << std::setprecision(1) << c.estimated_mbps
              << std::setprecision(3) << std::setw(13) << c.send_start_s << std::setw(12) << c.arrival_s
              << std::setw(10) << c.decode_seconds << std::setw(12) << c.decode_end_s << "\n";
  }
  if (r.status != stream::StreamStatus::Ok)
    std::cout << "FAILED (" << to_string(r.status) << "): " << r.error << "\n";
  std::cout << "context loaded: " << r.context_loaded_s << " s";
  if (r.query_tokens > 0)
    std::cout << ", query prefill (" << r.query_tokens << " tokens): " << r.query_prefill_s
              << " s, first token: " << r.first_token_s << " s [" << r.query_timing << "]";
  std::cout << "\ntime to first token: " << r.ttft_s << " s (SLO " << r.slo_s << " s "
            << (r.slo_met ? "met" : "missed") << "), " << r.bytes_sent << " bytes fetched\n";
}

void run(const Options& o) {
  const auto progress = terminal_progress();
  const bool need_model = !o.context.model.empty() || !o.query.empty();
  // A receiver loading from a store has the tokens, not the KV: no prefill.
  StreamContext ctx =
      load_stream_context(o.context, need_model, progress, o.store.empty() || o.context.quality);
  const auto& cache = ctx.cache;
  const auto& token_ids = ctx.info.token_ids;

  // The receiver's compute: measured with the model, or edited.
  std::optional<stream::RecomputeRate> rate;
  std::optional<stream::Recomputer> recomputer;
  std::optional<stream::QueryCost> query;
#if KVSCOPE_HAVE_TORCH
  if (ctx.model) {
    rate = stream::measure_recompute_rate(*ctx.model, token_ids);
    ctx.source["measured_recompute_rate"] = {{"tokens_per_s", rate->tokens_per_s},
                                             {"first_token_s", rate->first_token_s}};
  }
#endif
  if (o.recompute_rate > 0) {
    stream::RecomputeRate edited;
    edited.tokens_per_s = o.recompute_rate;
    edited.first_token_s = rate ? rate->first_token_s : 0.0;
    edited.source = "edited";
    rate = edited;
  }
  if (rate && o.first_token_s >= 0) rate->first_token_s = o.first_token_s;
#if KVSCOPE_HAVE_TORCH
  if (ctx.model && rate) {
    recomputer = stream::model_recomputer(*ctx.model, *rate);
    std::vector<std::int32_t> q;
    const std::string text = o.query.empty() ? kDefaultQuery : o.query;
    q = ctx.model->tokenizer().encode(text, false);
    if (o.query_tokens >= 0 && static_cast<int>(q.size()) > o.query_tokens) q.resize(o.query_tokens);
    if (!q.empty()) query = stream::model_query(*ctx.model, q, *rate);
  }
#endif
  if (!recomputer && rate && cache) {
    recomputer = stream::fixed_rate_recomputer(cache, rate->tokens_per_s);
    if (o.query_tokens > 0) query = stream::query_at_rate(o.query_tokens, *rate);
  }
  if (!rate && o.query_tokens > 0)
    throw Error(ErrorCode::InvalidArgument, "--query-tokens without a model needs --recompute-rate");

  stream::StreamConfig cfg;
  cfg.slo_s = o.slo;
  cfg.simulate = o.simulate;
  cfg.time_scale = o.time_scale;
  cfg.prior_mbps = o.prior_mbps;
  if (o.decode_rate > 0) cfg.modelled_decode_seconds_per_token = 1.0 / o.decode_rate;
  cfg.keep_assembled_cache = false;
  cfg.idle_timeout_s = o.store_timeout;
  const auto trace = stream::resolve_profile(o.trace);
  stream::StreamHooks hooks;
  hooks.recompute = recomputer;
  hooks.query = query;
#if KVSCOPE_HAVE_TORCH
  if (ctx.reference) {
    hooks.evaluate = [&](const kv::KVCache& assembled) {
      const eval::Reference& ref = *ctx.reference;
      std::vector<std::int32_t> fed{ref.context_tokens.back()};
      fed.insert(fed.end(), ref.continuation_tokens.begin(), ref.continuation_tokens.end() - 1);
      const auto logits = ctx.model->continue_logits(assembled, fed);
      const int vocab = ctx.model->config().vocab;
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
  stream::StreamReport report;
  std::string ladder_name;
  if (!o.store.empty()) {
    stream::StoreOptions so;
    so.retry_timeout_s = o.store_timeout;
    auto store = stream::open_store(o.store, so);
    const auto id = cache ? stream::context_id(*cache) : stream::context_id(ctx.info, ctx.shape);
    auto manifest = stream::load_manifest(*store, id, o.chunk_tokens);
    if (!manifest) {
      std::string other;
      for (const auto& k : store->list(stream::context_prefix(id) + "manifest:"))
        other += " " + k.substr(k.rfind(':') + 1);
      throw Error(
          ErrorCode::InvalidArgument,
          "this context is not in " + store->describe() + " at " + std::to_string(o.chunk_tokens) +
              " tokens per chunk (no " + stream::manifest_key(id, o.chunk_tokens) + ")" +
              (other.empty() ? ": publish it with `kvscope-cli store put` and the same context options"
                             : ": published chunk sizes:" + other + " (use --chunk-tokens)"));
    }
    // Without --ladder the ladder is the published levels, fine to coarse.
    stream::Ladder ladder;
    if (!o.ladder.empty()) {
      ladder = stream::load_ladder(o.ladder);
    } else {
      ladder.name = "published";
      for (const auto& l : manifest->levels) ladder.levels.push_back({l.name, l.config});
    }
    ladder_name = ladder.name;
    cfg.policy = stream::parse_policy(o.policy, ladder);
    stream::StreamSource source{store.get(), std::move(*manifest), token_ids};
    report = stream::run_stream(source, trace, cfg, hooks);
  } else {
    const auto ladder = stream::load_ladder(o.ladder.empty() ? stream::default_ladder_path()
                                                             : std::filesystem::path(o.ladder));
    ladder_name = ladder.name;
    cfg.policy = stream::parse_policy(o.policy, ladder);
    stream::EncodedContext context(cache, o.chunk_tokens);
    stream::PrepareOptions prep;
    prep.progress = progress;
    stream::prepare_stream(context, cfg.policy, prep);
    report = stream::run_stream(context, trace, cfg, hooks);
  }
  if (o.json) {
    auto j = stream::report_to_json(report);
    j["source"] = ctx.source;
    j["ladder"] = ladder_name;
    print_json(j);
  } else {
    print_text(report);
  }
  if (report.status != stream::StreamStatus::Ok)
    throw Error(report.error_code.value_or(ErrorCode::Network), report.error);
}

const CommandRegistrar stream_command(60, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "stream", "Load a context's KV cache chunk by chunk under a bandwidth trace and a TTFT SLO");
  add_stream_context_options(cmd, o->context);
  cmd->add_option("--trace,--profile", o->trace, "bandwidth trace: a preset name or a .csv/.json file")
      ->required();
  cmd->add_option("--slo", o->slo, "seconds by which the first token should be out (TTFT)")->required();
  cmd->add_option("--policy", o->policy, "adaptive | fp16 | int8 | text | fixed:LEVEL")
      ->capture_default_str();
  cmd->add_option("--chunk-tokens", o->chunk_tokens, "tokens per chunk")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option(
      "--ladder", o->ladder,
      "codec ladder file (default: resources/ladders/default.json; with --store: the published levels)");
  cmd->add_option("--store", o->store,
                  "fetch from a chunk store: redis://HOST:PORT[,...], dir:PATH or tcp://HOST:PORT (a `serve` "
                  "process); published with `store put`");
  cmd->add_option("--store-timeout", o->store_timeout,
                  "seconds to keep retrying an unreachable store before the run fails")
      ->capture_default_str();
  cmd->add_flag("--simulate", o->simulate, "simulated clock: no pacing or sleeps");
  cmd->add_option("--time-scale", o->time_scale, "real mode: trace seconds per wall second")
      ->capture_default_str();
  cmd->add_option("--recompute-rate,--compute-profile", o->recompute_rate,
                  "tokens/s charged for text chunks and the query (default: measured with the model)");
  cmd->add_option("--decode-rate", o->decode_rate,
                  "tokens/s the receiver's decode is planned with, for every level; with --simulate also "
                  "what each chunk's decode is charged (default: measured per chunk and level)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--first-token-seconds", o->first_token_s,
                  "seconds charged for the first generated token (default: measured with the model)");
  cmd->add_option("--query", o->query, "the query after the context (default: a short question)");
  cmd->add_option("--query-tokens", o->query_tokens,
                  "query length: truncates --query; without a model, tokens charged at --recompute-rate");
  cmd->add_option("--prior-mbps", o->prior_mbps,
                  "throughput guess for the first chunk (default: the trace's rate)");
  cmd->add_flag("--quality", o->context.quality,
                "measure the assembled cache's quality (perplexity, top-1, KL of a held-out continuation)");
  cmd->add_option("--continuation-tokens", o->context.continuation_tokens,
                  "--quality: held-out tokens scored")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_flag("--json", o->json, "print the report as JSON");
  cmd->callback([o] {
    if (o->context.quality && o->context.context.empty())
      throw Error(ErrorCode::InvalidArgument,
                  "--quality needs --context (the held-out continuation comes from it)");
    run(*o);
  });
});

}  // namespace
}  // namespace kvscope::cli
