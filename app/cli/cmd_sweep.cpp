// `kvscope-cli sweep`: the size-versus-quality curve over codec parameters on
// one context, reusing one prefill (core/eval/report.h).
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
  std::string codecs, csv;
  std::vector<std::string> settings, vary, points;
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
  if (o.points.empty()) {
    configs = eval::expand_grid(codecs, base, vary);
  } else {
    for (const auto& p : o.points) {
      codec::ParamSet set = base;
      for (const auto& [k, v] : parse_settings(split_list(p, ' '))) set[k] = v;
      for (auto& c : eval::expand_grid(codecs, set, vary)) configs.push_back(std::move(c));
    }
  }

  auto setup = prepare_evaluation(o);
  const auto results = eval::run_sweep(*setup.evaluator, *setup.reference, configs, setup.tasks);
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
  add_eval_setup_options(cmd, *o);
  cmd->add_option("--codecs", o->codecs, "comma-separated codecs (default: all)");
  cmd->add_option("--set", o->settings, "parameter key=value for every point (repeatable)");
  cmd->add_option("--vary", o->vary, "parameter to sweep: name=v1;v2;... (repeatable: cartesian product)");
  cmd->add_option("--point", o->points, "one point: 'k=v k=v' on top of --set (repeatable)");
  cmd->add_option("--csv", o->csv, "write the points as CSV to this file");
  cmd->add_flag("--json", o->json, "print the points as JSON");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvscope::cli
#endif
