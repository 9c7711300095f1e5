// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli prefill --context FILE --out CACHE.safetensors`: runs the model
// over a text and writes its KV cache (docs/architecture.md, "Files").
#if KVSCOPE_HAVE_TORCH
#include <chrono>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/raw_cache.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {
namespace {

struct PrefillArgs {
  std::string model, context, out, pre_rope_out;
  int max_tokens = 0;
  bool f32 = false, json = false;
};

const CommandRegistrar prefill_command(110, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("prefill", "Compute the KV cache of a text and save it as safetensors");
  auto a = std::make_shared<PrefillArgs>();
  cmd->add_option("--model", a->model, "GGUF file or Hugging Face folder (default: the default model)");
  cmd->add_option("--context", a->context, "UTF-8 text file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--max-tokens", a->max_tokens, "keep only the first N tokens (0 = all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--out", a->out, "output cache (.safetensors, keys after RoPE)")->required();
  cmd->add_option("--pre-rope-keys", a->pre_rope_out,
                  "also write the cache with keys before RoPE to this file");
  cmd->add_flag("--f32", a->f32, "store float32 instead of float16");
  cmd->add_flag("--json", a->json, "print a JSON report (tokens, seconds, tokens/s)");
  cmd->callback([a] {
    model::LoadOptions lopts;
    lopts.progress = terminal_progress();
    lopts.hash_file = true;
    const auto load_start = std::chrono::steady_clock::now();
    const auto m = model::Model::load(resolve_model(a->model), lopts);
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    const std::string text = read_file(a->context);
    auto ids = m->tokenizer().encode(text, m->tokenizer().adds_bos());
    if (a->max_tokens > 0 && static_cast<int>(ids.size()) > a->max_tokens) ids.resize(a->max_tokens);
    if (ids.empty()) throw Error(ErrorCode::InvalidArgument, a->context, "context has no tokens");
    model::PrefillOptions popts;
    popts.keep_pre_rope_keys = !a->pre_rope_out.empty();
    popts.progress = terminal_progress();
    auto r = m->prefill(ids, popts);
    const auto dtype = a->f32 ? io::RawDtype::F32 : io::RawDtype::F16;
    io::save_cache(r.cache, a->out, dtype);
    if (r.pre_rope) io::save_cache(*r.pre_rope, a->pre_rope_out, dtype);
    const double tps = static_cast<double>(ids.size()) / r.seconds;
    if (a->json) {
      print_json({{"model", m->config().name},
                  {"tokens", ids.size()},
                  {"load_seconds", load_s},
                  {"prefill_seconds", r.seconds},
                  {"tokens_per_second", tps},
                  {"out", a->out},
                  {"kv_bytes_fp16", r.cache.shape().fp16_bytes()},
                  {"threads", m->threads()}});
    } else {
      std::cout << "prefilled " << ids.size() << " tokens in " << r.seconds << " s (" << tps
                << " tokens/s), wrote " << a->out << "\n";
    }
  });
});

}  // namespace
}  // namespace kvscope::cli
#endif
