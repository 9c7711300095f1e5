// `kvscope-cli model info [--model PATH] [--json]`: what a model file holds.
#if KVSCOPE_HAVE_TORCH
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {
namespace {

const CommandRegistrar model_command(100, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("model", "Inspect a model");
  cmd->require_subcommand(1);
  auto* info =
      cmd->add_subcommand("info", "Architecture, dimensions, parameter count and KV bytes per token");
  auto model = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto hash = std::make_shared<bool>(false);
  info->add_option("--model", *model, "GGUF file or Hugging Face folder (default: the default model)");
  info->add_flag("--json", *as_json, "print JSON");
  info->add_flag("--sha256", *hash, "also compute the file's SHA-256");
  info->callback([model, as_json, hash] {
    model::LoadOptions opts;
    opts.progress = terminal_progress();
    const auto m = model::Model::load(resolve_model(*model), opts);
    const auto& c = m->config();
    nlohmann::json j = {
        {"path", c.path.string()},
        {"format", c.format},
        {"name", c.name},
        {"architecture", c.architecture},
        {"layers", c.layers},
        {"heads", c.heads},
        {"kv_heads", c.kv_heads},
        {"head_dim", c.head_dim},
        {"hidden", c.hidden},
        {"intermediate", c.intermediate},
        {"vocab", c.vocab},
        {"context_length", c.context_length},
        {"rope_theta", c.rope_theta},
        {"rope_scaling", c.rope_scaling_type},
        {"rms_eps", c.rms_eps},
        {"tied_embeddings", c.tied_embeddings},
        {"qkv_bias", c.qkv_bias},
        {"parameter_count", c.parameter_count},
        {"kv_bytes_per_token", c.kv_bytes_per_token()},
        {"tokenizer", m->tokenizer().spec().kind == model::TokenizerSpec::Kind::ByteLevelBpe
                          ? "byte-level BPE"
                          : "SentencePiece BPE"},
        {"device", m->device()},
    };
    if (*hash) j["sha256"] = m->file_sha256();
    if (*as_json) {
      print_json(j);
      return;
    }
    for (const auto& [k, v] : j.items())
      std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
#endif
