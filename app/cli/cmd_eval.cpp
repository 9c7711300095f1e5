// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli eval`: quality of one codec configuration on one context
// (core/eval/quality.h): size, perplexity change, top-1 agreement, KL,
// greedy match and optionally retrieval-task accuracy.
#include "kvscope/common/error.h"
#if KVSCOPE_HAVE_TORCH
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "eval_setup.h"
#include "kvscope/common/paths.h"
#include "kvscope/eval/dataset.h"
#include "kvscope/eval/quality.h"
#include "kvscope/eval/report.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {
namespace {

struct Options : EvalSetupOptions {
  std::string codec;
  std::vector<std::string> settings;
  bool json = false, list = false, count_tokens = false;
};

void list_datasets(const Options& o) {
  const bool json = o.json;
  const auto idx = eval::load_dataset_index();
  // Token counts need the model's tokenizer (loaded only when asked).
  std::vector<long> tokens(idx.contexts.size(), -1);
  if (o.count_tokens) {
    model::LoadOptions lo;
    lo.device = "cpu";
    const auto m = model::Model::load(resolve_model(o.model), lo);
    const auto& tok = m->tokenizer();
    for (std::size_t i = 0; i < idx.contexts.size(); ++i)
      tokens[i] = long(tok.encode(read_file(idx.contexts[i].path), tok.adds_bos()).size());
  }
  if (json) {
    nlohmann::json j = {{"root", idx.root.string()}, {"default_context", idx.default_context}};
    for (std::size_t i = 0; i < idx.contexts.size(); ++i) {
      const auto& c = idx.contexts[i];
      j["contexts"].push_back({{"id", c.id},
                               {"title", c.title},
                               {"kind", c.kind},
                               {"file", c.path.string()},
                               {"chars", c.chars},
                               {"approx_tokens", c.approx_tokens},
                               {"licence", c.licence}});
      if (tokens[i] >= 0) j["contexts"].back()["tokens"] = tokens[i];
    }
    for (const auto& t : idx.task_sets)
      j["tasks"].push_back({{"id", t.id}, {"description", t.description}, {"count", t.count}});
    print_json(j);
    return;
  }
  for (std::size_t i = 0; i < idx.contexts.size(); ++i) {
    const auto& c = idx.contexts[i];
    std::printf("%-22s %-10s %c%5ld tokens  %s%s\n", c.id.c_str(), c.kind.c_str(), tokens[i] >= 0 ? ' ' : '~',
                tokens[i] >= 0 ? tokens[i] : long(c.approx_tokens), c.title.c_str(),
                c.id == idx.default_context ? "  (default)" : "");
  }
  for (const auto& t : idx.task_sets)
    std::printf("task %-17s %3zu tasks  %s\n", t.id.c_str(), t.count, t.description.c_str());
}

void run(const Options& o) {
  if (o.list) return list_datasets(o);
  require(!o.codec.empty(), ErrorCode::InvalidArgument, "eval: --codec is required");
  auto setup = prepare_evaluation(o);
  const auto r = setup.evaluator->evaluate(
      *setup.reference, codec::CodecConfig{o.codec, parse_settings(o.settings)}, setup.tasks);
  if (o.json) {
    std::cout << eval::result_json(r) << std::endl;
    return;
  }
  std::printf("context %s: %d tokens cached + 1, %d continuation tokens scored\n", r.context.c_str(),
              r.context_tokens - 1, r.continuation_tokens);
  std::printf("codec %s: %.3f bits/element, %.2fx vs fp16, %.2fx vs int8 (%zu bytes)\n",
              r.config.codec.c_str(), r.bits_per_element, r.ratio_vs_fp16, r.ratio_vs_int8,
              r.size.encoded_bytes);
  std::printf(
      "ppl %.4f (reference %.4f, %+.3f%%), top-1 agreement %.2f%%, KL %.5f nats, greedy match %.2f%%\n",
      r.ppl, r.ppl_ref, r.delta_ppl_pct, 100 * r.top1_agreement, r.kl, 100 * r.greedy_match);
  if (!r.tasks.empty())
    std::printf("tasks: %.1f%% correct (reference %.1f%%) over %zu\n", 100 * r.task_accuracy,
                100 * r.task_accuracy_ref, r.tasks.size());
}

const CommandRegistrar eval_command(400, [](CLI::App& app) {
  auto* cmd =
      app.add_subcommand("eval", "Quality of a codec configuration: size, perplexity, agreement, KL, tasks");
  auto o = std::make_shared<Options>();
  add_eval_setup_options(cmd, *o);
  cmd->add_option("--set", o->settings, "codec parameter key=value (repeatable)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_option("--codec", o->codec, "codec name (see `kvscope-cli codecs`)");
  cmd->add_flag("--list", o->list, "list the dataset contexts and task sets, then exit");
  cmd->add_flag("--count-tokens", o->count_tokens, "with --list: count tokens with the model's tokenizer");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvscope::cli
#endif
