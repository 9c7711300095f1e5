// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli generate --prompt TEXT [-n N]`: greedy continuation of a prompt.
#if KVSCOPE_HAVE_TORCH
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt;
  int n = 32;
  bool json = false, no_stop = false;
};

const CommandRegistrar generate_command(120, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Greedy generation after a prompt");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--model", a->model, "GGUF file or Hugging Face folder (default: the default model)");
  cmd->add_option("--prompt", a->prompt, "prompt text")->required();
  cmd->add_option("-n", a->n, "tokens to generate")->check(CLI::Range(0, 1 << 16));
  cmd->add_flag("--no-stop", a->no_stop, "keep going past the end-of-sequence token");
  cmd->add_flag("--json", a->json, "print JSON (prompt ids, generated ids, text)");
  cmd->callback([a] {
    model::LoadOptions lopts;
    lopts.progress = terminal_progress();
    const auto m = model::Model::load(resolve_model(a->model), lopts);
    const auto& tok = m->tokenizer();
    const auto ids = tok.encode(a->prompt, tok.adds_bos());
    if (ids.empty()) throw Error(ErrorCode::InvalidArgument, "the prompt has no tokens");
    const auto out = m->generate(kv::KVCache(), ids, a->n, !a->no_stop);
    const std::string text = tok.decode(out);
    if (a->json) {
      print_json({{"prompt_ids", ids}, {"generated_ids", out}, {"text", text}});
    } else {
      std::cout << a->prompt << text << std::endl;
    }
  });
});

}  // namespace
}  // namespace kvscope::cli
#endif
