// `kvscope-cli sweep`: the size-versus-quality curve over codec parameters on
// one context, reusing one prefill (core/eval/report.h).
#include "kvscope/common/error.h"
#if KVSCOPE_HAVE_TORCH
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/common/paths.h"
#include "kvscope/eval/dataset.h"
#include "kvscope/eval/quality.h"
#include "kvscope/eval/report.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {
namespace {

struct Options {
  std::string model, context, device = "auto", codecs, csv, tasks;
  std::vector<std::string> settings, vary, points;
  int max_tokens = 0, continuation = 64, greedy = 32, task_tokens = 8, threads = 0;
  bool json = false;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

void run(const Options& o) {
  std::map<std::string, std::vector<std::string>> vary;
  for (const auto& v : o.vary) {
    const auto eq = v.find('=');
    require(eq != std::string::npos && eq > 0, ErrorCode::InvalidArgument,
            "--vary expects name=v1;v2;..., got '" + v + "'");
    vary[v.substr(0, eq)] = split(v.substr(eq + 1), ';');
    require(!vary[v.substr(0, eq)].empty(), ErrorCode::InvalidArgument, "--vary " + v + " lists no value");
  }
  std::vector<std::string> codecs = split(o.codecs, ',');
  if (codecs.empty())
    for (const auto* c : codec::all_codecs()) codecs.push_back(c->name());
  // Each --point is one base parameter set on top of --set ("k=v k=v"); --vary expands each.
  std::vector<codec::CodecConfig> configs;
  const codec::ParamSet base = parse_settings(o.settings);
  if (o.points.empty()) {
    configs = eval::expand_grid(codecs, base, vary);
  } else {
    for (const auto& p : o.points) {
      codec::ParamSet set = base;
      for (const auto& [k, v] : parse_settings(split(p, ' '))) set[k] = v;
      for (auto& c : eval::expand_grid(codecs, set, vary)) configs.push_back(std::move(c));
    }
  }

  std::string label;
  const std::string context_arg = o.context.empty() ? eval::load_dataset_index().default_context : o.context;
  const std::string text = eval::load_context_text(context_arg, &label);
  model::LoadOptions lo;
  lo.device = o.device;
  const auto m = model::Model::load(resolve_model(o.model), lo);
  eval::EvalConfig cfg;
  cfg.max_context_tokens = o.max_tokens;
  cfg.continuation_tokens = o.continuation;
  cfg.greedy_tokens = o.greedy;
  cfg.task_greedy_tokens = o.task_tokens;
  cfg.threads = o.threads;
  cfg.progress = terminal_progress();
  eval::Evaluator ev(*m, cfg);
  const auto& ref = ev.reference(text, label);
  std::vector<const std::vector<eval::TaskReference>*> tasks;
  if (!o.tasks.empty()) {
    const auto idx = eval::load_dataset_index();
    for (const auto& id : split(o.tasks, ',')) tasks.push_back(&ev.task_references(idx, id));
  }
  const auto results = eval::run_sweep(ev, ref, configs, tasks);
  if (!o.csv.empty()) {
    const std::string csv = eval::results_csv(results);
    write_file_atomically(o.csv, csv.data(), csv.size());
  }
  if (o.json) {
    std::cout << eval::results_json(results) << std::endl;
    return;
  }
  std::printf("%-10s %-40s %7s %7s %7s %9s %7s %9s %7s\n", "codec", "params", "bits/el", "x_fp16", "x_int8",
              "dppl%", "top1%", "KL", "greedy%");
  for (const auto& r : results) {
    std::string p;
    for (const auto& [k, v] : r.config.params) p += (p.empty() ? "" : " ") + k + "=" + v;
    std::printf("%-10s %-40s %7.3f %7.2f %7.2f %+9.3f %7.2f %9.5f %7.2f\n", r.config.codec.c_str(), p.c_str(),
                r.bits_per_element, r.ratio_vs_fp16, r.ratio_vs_int8, r.delta_ppl_pct, 100 * r.top1_agreement,
                r.kl, 100 * r.greedy_match);
  }
}

const CommandRegistrar sweep_command(410, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep",
                                 "Size-versus-quality points over codecs and parameter values (one prefill)");
  auto o = std::make_shared<Options>();
  cmd->add_option("--model", o->model, "model file (default: the default model)");
  cmd->add_option("--device", o->device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_option("--context", o->context,
                  "context text file, or a dataset id (default: the index's default)");
  cmd->add_option("--codecs", o->codecs, "comma-separated codecs (default: all)");
  cmd->add_option("--set", o->settings, "parameter key=value for every point (repeatable)");
  cmd->add_option("--vary", o->vary, "parameter to sweep: name=v1;v2;... (repeatable: cartesian product)");
  cmd->add_option("--point", o->points, "one point: 'k=v k=v' on top of --set (repeatable)");
  cmd->add_option("--max-tokens", o->max_tokens, "keep at most N context tokens (0 = all)")
      ->capture_default_str();
  cmd->add_option("--continuation-tokens", o->continuation, "held-out continuation tokens scored")
      ->capture_default_str();
  cmd->add_option("--greedy-tokens", o->greedy, "tokens of greedy generation compared")
      ->capture_default_str();
  cmd->add_option("--tasks", o->tasks, "comma-separated task sets to run at every point");
  cmd->add_option("--task-tokens", o->task_tokens, "tokens generated per task")->capture_default_str();
  cmd->add_option("--threads", o->threads, "codec threads (0 = all)")->capture_default_str();
  cmd->add_option("--csv", o->csv, "write the points as CSV to this file");
  cmd->add_flag("--json", o->json, "print the points as JSON");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvscope::cli
#endif
