// SPDX-License-Identifier: Apache-2.0
// Built only with the model runtime (KVSCOPE_HAVE_TORCH is a compile definition).
#if KVSCOPE_HAVE_TORCH
#include "eval_setup.h"

#include <sstream>

#include "cli_util.h"
#include "kvscope/eval/dataset.h"

namespace kvscope::cli {

void add_eval_setup_options(CLI::App* cmd, EvalSetupOptions& o) {
  cmd->add_option("--model", o.model, "model file (default: the default model)");
  cmd->add_option("--device", o.device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_option("--context", o.context,
                  "context text file, or a dataset id (default: the index's default)");
  cmd->add_option("--max-tokens", o.max_tokens, "keep at most N context tokens (0 = all)")
      ->capture_default_str();
  cmd->add_option("--continuation-tokens", o.continuation, "held-out continuation tokens scored")
      ->capture_default_str();
  cmd->add_option("--greedy-tokens", o.greedy, "tokens of greedy generation compared")->capture_default_str();
  cmd->add_option("--tasks", o.tasks, "comma-separated task sets to run (passkey,line-retrieval)");
  cmd->add_option("--task-tokens", o.task_tokens, "tokens generated per task")->capture_default_str();
  cmd->add_option("--threads", o.threads, "codec threads (0 = all)")->capture_default_str();
}

EvalSetup prepare_evaluation(const EvalSetupOptions& o) {
  EvalSetup s;
  std::string label;
  const std::string context_arg = o.context.empty() ? eval::load_dataset_index().default_context : o.context;
  const std::string text = eval::load_context_text(context_arg, &label);
  model::LoadOptions lo;
  lo.device = o.device;
  s.model = model::Model::load(resolve_model(o.model), lo);
  eval::EvalConfig cfg;
  cfg.max_context_tokens = o.max_tokens;
  cfg.continuation_tokens = o.continuation;
  cfg.greedy_tokens = o.greedy;
  cfg.task_greedy_tokens = o.task_tokens;
  cfg.threads = o.threads;
  cfg.progress = terminal_progress();
  s.evaluator = std::make_unique<eval::Evaluator>(*s.model, cfg);
  s.reference = &s.evaluator->reference(text, label);
  if (!o.tasks.empty()) {
    const auto idx = eval::load_dataset_index();
    for (const auto& id : split_list(o.tasks, ',')) s.tasks.push_back(&s.evaluator->task_references(idx, id));
  }
  return s;
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace kvscope::cli
#endif
