// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli sweep`: the rate-distortion curve (bits/element against KL,
// with top-1, dppl and greedy match) over any grid of codec parameters, on one
// context or several (one prefill each, reused by every point;
// core/eval/report.h).
#include "kvscope/common/error.h"
#if KVSCOPE_HAVE_TORCH
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "eval_setup.h"
#include "kvscope/codec/bin_plan.h"
#include "kvscope/common/paths.h"
#include "kvscope/eval/dataset.h"
#include "kvscope/eval/quality.h"
#include "kvscope/eval/report.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {
namespace {

struct Options : EvalSetupOptions {
  std::string codecs, csv, contexts, split, summary_csv, sensitivity;
  std::vector<std::string> settings, vary, points;
  std::vector<double> plan_levels;
  bool json = false;
};

void run(const Options& o) {
  std::map<std::string, std::vector<std::string>> vary;
  for (const auto& v : o.vary) {
    const auto eq = v.find('=');
    require(eq != std::string::npos && eq > 0, ErrorCode::InvalidArgument,
            "--vary expects name=v1;v2;..., got '" + v + "'");
    vary[v.substr(0, eq)] = split_list(v.substr(eq + 1), ';');
    require(!vary[v.substr(0, eq)].empty(), ErrorCode::InvalidArgument, "--vary " + v + " lists no value");
  }
  std::vector<std::string> codecs = split_list(o.codecs, ',');
  if (codecs.empty())
    for (const auto* c : codec::all_codecs()) codecs.push_back(c->name());
  // Each --point is one base parameter set on top of --set ("k=v k=v"); --vary expands each.
  std::vector<codec::CodecConfig> configs;
  const codec::ParamSet base = parse_settings(o.settings);
  // Bases: --set alone, or each --point on top of it; each --plan-level adds
  // the per-layer bins that level of the measured sensitivity gives.
  std::vector<codec::ParamSet> bases;
  if (o.points.empty()) bases.push_back(base);
  for (const auto& p : o.points) {
    codec::ParamSet set = base;
    for (const auto& [k, v] : parse_settings(split_list(p, ' '))) set[k] = v;
    bases.push_back(std::move(set));
  }
  if (!o.plan_levels.empty()) {
    require(!o.sensitivity.empty(), ErrorCode::InvalidArgument,
            "sweep: --plan-level needs --sensitivity FILE");
    const auto sens = codec::load_sensitivity(o.sensitivity);
    std::vector<codec::ParamSet> planned;
    for (const auto& b : bases)
      for (double level : o.plan_levels) {
        codec::ParamSet set = b;
        for (const auto& [k, v] : codec::plan_params(codec::plan_bins(sens, level))) set[k] = v;
        planned.push_back(std::move(set));
      }
    bases = std::move(planned);
  }
  for (const auto& b : bases)
    for (auto& c : eval::expand_grid(codecs, b, vary)) configs.push_back(std::move(c));

  // Contexts: --split (datasets/splits.json), --contexts, else --context.
  std::vector<std::string> contexts = split_list(o.contexts, ',');
  if (!o.split.empty())
    for (auto& id : eval::load_dataset_split(o.split)) contexts.push_back(std::move(id));
  EvalSetupOptions first = o;
  if (!contexts.empty()) first.context = contexts.front();
  auto setup = prepare_evaluation(first);
  auto results = eval::run_sweep(*setup.evaluator, *setup.reference, configs, setup.tasks);
  for (std::size_t i = 1; i < contexts.size(); ++i) {
    std::string label;
    const std::string text = eval::load_context_text(contexts[i], &label);
    const auto& ref = setup.evaluator->reference(text, label);
    for (auto& r : eval::run_sweep(*setup.evaluator, ref, configs, setup.tasks))
      results.push_back(std::move(r));
  }
  const auto points = eval::summarize_sweep(results);
  if (!o.csv.empty()) {
    const std::string csv = eval::results_csv(results);
    write_file_atomically(o.csv, csv.data(), csv.size());
  }
  if (!o.summary_csv.empty()) {
    const std::string csv = eval::sweep_points_csv(points);
    write_file_atomically(o.summary_csv, csv.data(), csv.size());
  }
  if (o.json) {
    std::cout << eval::results_json(results) << std::endl;
    return;
  }
  auto params_text = [](const codec::ParamSet& params) {
    std::string p;
    for (const auto& [k, v] : params) p += (p.empty() ? "" : " ") + k + "=" + v;
    return p;
  };
  std::printf("%-18s %-10s %-40s %7s %7s %7s %9s %7s %9s %7s\n", "context", "codec", "params", "bits/el",
              "x_fp16", "x_int8", "dppl%", "top1%", "KL", "greedy%");
  for (const auto& r : results)
    std::printf("%-18s %-10s %-40s %7.3f %7.2f %7.2f %+9.3f %7.2f %9.5f %7.2f\n", r.context.c_str(),
                r.config.codec.c_str(), params_text(r.config.params).c_str(), r.bits_per_element,
                r.ratio_vs_fp16, r.ratio_vs_int8, r.delta_ppl_pct, 100 * r.top1_agreement, r.kl,
                100 * r.greedy_match);
  // The rate-distortion curve: means over the contexts, by size; * = on the KL Pareto front.
  auto sorted = points;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.bits_per_element < b.bits_per_element; });
  std::printf("\nrate-distortion, mean over %zu context(s) (* = Pareto front by KL)\n",
              contexts.empty() ? std::size_t(1) : contexts.size());
  std::printf("%1s %-10s %-40s %7s %7s %6s %6s %6s %7s %9s %7s %9s %7s\n", "", "codec", "params", "bits/el",
              "x_int8", "hdr", "tables", "steps", "payload", "KL", "top1%", "dppl%", "greedy%");
  for (const auto& p : sorted)
    std::printf("%1s %-10s %-40s %7.3f %7.2f %6.3f %6.3f %6.3f %7.3f %9.5f %7.2f %+9.3f %7.2f\n",
                p.pareto ? "*" : "", p.config.codec.c_str(), params_text(p.config.params).c_str(),
                p.bits_per_element, p.ratio_vs_int8, p.header_bpe, p.table_bpe, p.step_bpe, p.payload_bpe,
                p.kl, 100 * p.top1_agreement, p.delta_ppl_pct, 100 * p.greedy_match);
}

const CommandRegistrar sweep_command(410, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep",
                                 "Size-versus-quality points over codecs and parameter values (one prefill)");
  auto o = std::make_shared<Options>();
  add_eval_setup_options(cmd, *o);
  cmd->add_option("--codecs", o->codecs, "comma-separated codecs (default: all)");
  cmd->add_option("--set", o->settings, "parameter key=value for every point (repeatable)");
  cmd->add_option("--vary", o->vary, "parameter to sweep: name=v1;v2;... (repeatable: cartesian product)");
  cmd->add_option("--point", o->points, "one point: 'k=v k=v' on top of --set (repeatable)");
  cmd->add_option("--sensitivity", o->sensitivity,
                  "sensitivity file (`kvscope-cli sensitivity --out`), or a calibration that keeps one");
  cmd->add_option("--plan-level", o->plan_levels,
                  "add cachegen per-layer bins planned from --sensitivity at this level (repeatable)");
  cmd->add_option("--contexts", o->contexts, "comma-separated contexts (ids or files) instead of --context");
  cmd->add_option("--split", o->split,
                  "add the contexts of this split of datasets/splits.json (tune, held-out)");
  cmd->add_option("--csv", o->csv, "write every (context, point) result as CSV to this file");
  cmd->add_option(
      "--summary-csv", o->summary_csv,
      "write the rate-distortion curve (per point: means over the contexts, size breakdown, Pareto "
      "flag) as CSV to this file");
  cmd->add_flag("--json", o->json, "print the points as JSON");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvscope::cli
#endif
