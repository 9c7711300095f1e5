// SPDX-License-Identifier: Apache-2.0
#pragma once

// What `eval` and `sweep` share: the model, the context, the evaluation
// settings, and one prefilled reference (plus task references) built from them.

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "kvscope/eval/quality.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {

struct EvalSetupOptions {
  std::string model, context, device = "auto", tasks;
  int max_tokens = 0, continuation = 64, greedy = 32, task_tokens = 8, threads = 0;
};

/// Registers --model, --device, --context, --max-tokens, --continuation-tokens,
/// --greedy-tokens, --tasks, --task-tokens and --threads on `cmd`.
void add_eval_setup_options(CLI::App* cmd, EvalSetupOptions& o);

/// A loaded model, its evaluator and the reference of one context. Members are
/// owned here, so the reference and task pointers stay valid while it lives.
struct EvalSetup {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<eval::Evaluator> evaluator;
  const eval::Reference* reference = nullptr;
  std::vector<const std::vector<eval::TaskReference>*> tasks;
};

/// Loads the model, prefills the context (a file or a dataset id; the index's
/// default when empty) and the requested task sets. Errors name the file.
EvalSetup prepare_evaluation(const EvalSetupOptions& o);

/// Splits on `sep`, dropping empty items.
std::vector<std::string> split_list(const std::string& s, char sep);

}  // namespace kvscope::cli
