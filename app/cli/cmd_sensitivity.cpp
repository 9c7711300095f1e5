// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli sensitivity`: measures how much the continuation's KL grows
// when one layer's keys or values alone get coarser cachegen bins
// (core/eval/sensitivity.h), and `kvscope-cli plan`: the per-layer bins that
// sensitivity gives under a level or a bits-per-element budget
// (kvscope/codec/bin_plan.h).
#include "kvscope/common/error.h"
#if KVSCOPE_HAVE_TORCH
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "cmd_codec_io.h"
#include "command_registry.h"
#include "eval_setup.h"
#include "kvscope/codec/bin_plan.h"
#include "kvscope/common/paths.h"
#include "kvscope/eval/dataset.h"
#include "kvscope/eval/sensitivity.h"

namespace kvscope::cli {
namespace {

struct Options : EvalSetupOptions {
  std::string contexts, split, out;
  std::vector<std::string> settings;
  int base_bins = 32, coarse_bins = 10;
  bool json = false;
};

void print_sensitivity(const codec::LayerSensitivity& s) {
  std::printf("base: every layer at %d bins, KL %.5f; one layer at %d bins:\n", s.base_bins, s.base_kl,
              s.coarse_bins);
  std::printf("%5s %12s %12s\n", "layer", "keys dKL", "values dKL");
  for (int l = 0; l < s.layers; ++l) std::printf("%5d %12.5f %12.5f\n", l, s.key_kl[l], s.value_kl[l]);
}

nlohmann::json sensitivity_json(const codec::LayerSensitivity& s) {
  return {{"layers", s.layers},
          {"base_bins", s.base_bins},
          {"coarse_bins", s.coarse_bins},
          {"base_kl", s.base_kl},
          {"key_kl", s.key_kl},
          {"value_kl", s.value_kl},
          {"params", s.params},
          {"contexts", s.contexts},
          {"context_tokens", s.context_tokens},
          {"scored_tokens", s.scored_tokens}};
}

const CommandRegistrar sensitivity_command(420, [](CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sensitivity",
      "Measure the KL increase when one layer's keys or values alone get coarser cachegen bins");
  auto o = std::make_shared<Options>();
  add_eval_setup_options(cmd, *o);
  cmd->add_option("--contexts", o->contexts, "comma-separated contexts (ids or files) instead of --context");
  cmd->add_option("--split", o->split, "add the contexts of this split of datasets/splits.json (e.g. tune)");
  cmd->add_option("--set", o->settings, "other cachegen parameters key=value (repeatable)");
  cmd->add_option("--base-bins", o->base_bins, "bins of every layer in the base configuration")
      ->capture_default_str();
  cmd->add_option("--coarse-bins", o->coarse_bins, "bins of the one layer coarsened at a time")
      ->capture_default_str();
  cmd->add_option("--out", o->out, "write the cachegen.sensitivity section bytes to this file")->required();
  cmd->add_flag("--json", o->json, "print the result as JSON");
  cmd->callback([o] {
    std::vector<std::string> contexts = split_list(o->contexts, ',');
    if (!o->split.empty())
      for (auto& id : eval::load_dataset_split(o->split)) contexts.push_back(std::move(id));
    EvalSetupOptions first = *o;
    if (!contexts.empty()) first.context = contexts.front();
    auto setup = prepare_evaluation(first);
    std::vector<const eval::Reference*> refs{setup.reference};
    for (std::size_t i = 1; i < contexts.size(); ++i) {
      std::string label;
      const std::string text = eval::load_context_text(contexts[i], &label);
      refs.push_back(&setup.evaluator->reference(text, label));
    }
    const auto s = eval::measure_sensitivity(*setup.evaluator, refs, parse_settings(o->settings),
                                             o->base_bins, o->coarse_bins);
    const auto bytes = codec::serialize_sensitivity(s);
    write_file_atomically(o->out, bytes.data(), bytes.size());
    if (o->json) {
      print_json(sensitivity_json(s));
      return;
    }
    print_sensitivity(s);
    std::cout << "wrote " << o->out << "\n";
  });
});

struct PlanOptions {
  std::string sensitivity, in;
  std::vector<std::string> settings;
  double level = 0, bits = 0;
  int threads = 0;
  bool json = false;
};

const CommandRegistrar plan_command(430, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("plan", "cachegen bins per layer from a measured sensitivity");
  auto o = std::make_shared<PlanOptions>();
  cmd->add_option("--sensitivity", o->sensitivity,
                  "file written by `kvscope-cli sensitivity`, or a calibration that keeps one")
      ->required();
  cmd->add_option("--level", o->level, "plan level: log2 of the geometric-mean M (ignored with --bits)");
  cmd->add_option("--bits", o->bits, "bits-per-element budget, measured by encoding --in");
  cmd->add_option("--in", o->in, "raw cache (.safetensors) to measure --bits on");
  cmd->add_option("--set", o->settings, "other cachegen parameters key=value for --bits (repeatable)");
  cmd->add_option("--threads", o->threads, "encoder threads (0 = all)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->callback([o] {
    const auto s = codec::load_sensitivity(o->sensitivity);
    codec::BinPlan plan;
    if (o->bits > 0) {
      require(!o->in.empty(), ErrorCode::InvalidArgument, "plan: --bits needs --in CACHE");
      codec::EncodeOptions eo;
      eo.threads = o->threads;
      plan = codec::plan_for_budget(read_cache_file(o->in), parse_settings(o->settings), s, o->bits, eo);
    } else {
      plan = codec::plan_bins(s, o->level);
    }
    const auto params = codec::plan_params(plan);
    if (o->json) {
      print_json(params);
      return;
    }
    for (const auto& [k, v] : params) std::cout << "--set " << k << "=" << v << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
#endif
