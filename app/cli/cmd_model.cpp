// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli model info [--model PATH] [--json]`: what a model file holds,
// how it was loaded and the memory it takes; a model that cannot be loaded
// prints the reason (type, architecture, tokenizer) and exits 1.
// `kvscope-cli model bench [--model PATH] [--tokens N]`: load time, prefill
// time and peak resident memory (the report behind docs/models.md's table).
#if KVSCOPE_HAVE_TORCH
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/model/model.h"

namespace kvscope::cli {
namespace {

// Resident set size now (/proc/self/statm), bytes; 0 if unavailable.
std::int64_t current_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::int64_t pages_total = 0, pages_resident = 0;
  if (!(in >> pages_total >> pages_resident)) return 0;
  return pages_resident * static_cast<std::int64_t>(sysconf(_SC_PAGESIZE));
}

std::int64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::int64_t>(ru.ru_maxrss) * 1024;
}

nlohmann::json describe(const model::Model& m) {
  const auto& c = m.config();
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [type, count] : c.tensor_types) types[type] = count;
  nlohmann::json windows = nlohmann::json::array();
  for (int w : c.layer_window) windows.push_back(w);
  nlohmann::json features = nlohmann::json::array();
  if (c.qkv_bias) features.push_back("qkv bias");
  if (c.qk_norm) features.push_back("q/k norm");
  if (c.sandwich_norms) features.push_back("post-attention and post-MLP norms");
  if (c.gelu) features.push_back("GELU MLP");
  if (c.embedding_scale != 1.0) features.push_back("scaled embeddings");
  if (c.attn_softcap > 0) features.push_back("attention soft-capping");
  if (c.final_softcap > 0) features.push_back("logit soft-capping");
  if (c.has_sliding_window()) features.push_back("sliding-window layers");
  return {
      {"path", c.path.string()},
      {"format", c.format},
      {"name", c.name},
      {"architecture", c.architecture},
      {"features", features},
      {"layers", c.layers},
      {"heads", c.heads},
      {"kv_heads", c.kv_heads},
      {"head_dim", c.head_dim},
      {"hidden", c.hidden},
      {"intermediate", c.intermediate},
      {"vocab", c.vocab},
      {"context_length", c.context_length},
      {"rope_theta", c.rope_theta},
      {"rope_local_theta", c.rope_local_theta},
      {"rope_scaling", c.rope_scaling_type},
      {"sliding_window", c.sliding_window},
      {"layer_window", windows},
      {"rms_eps", c.rms_eps},
      {"tied_embeddings", c.tied_embeddings},
      {"qkv_bias", c.qkv_bias},
      {"parameter_count", c.parameter_count},
      {"tensor_types", types},
      {"weight_storage", c.weight_storage},
      {"weights_file_bytes", c.file_weight_bytes},
      {"weights_memory_bytes", c.resident_weight_bytes},
      {"kv_bytes_per_token", c.kv_bytes_per_token()},
      {"tokenizer", m.tokenizer().spec().kind == model::TokenizerSpec::Kind::ByteLevelBpe
                        ? "byte-level BPE"
                        : "SentencePiece BPE"},
      {"device", m.device()},
  };
}

void print(const nlohmann::json& j, bool as_json) {
  if (as_json) {
    print_json(j);
    return;
  }
  for (const auto& [k, v] : j.items())
    std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
}

const CommandRegistrar model_command(100, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("model", "Inspect a model");
  cmd->require_subcommand(1);
  auto* info = cmd->add_subcommand(
      "info", "Architecture, dimensions, tensor types, memory taken, parameter count and KV bytes per token");
  auto model = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto hash = std::make_shared<bool>(false);
  auto weights = std::make_shared<std::string>("auto");
  info->add_option("--model", *model, "GGUF file or Hugging Face folder (default: the default model)");
  info->add_flag("--json", *as_json, "print JSON");
  info->add_flag("--sha256", *hash, "also compute the file's SHA-256");
  info->add_option("--weights", *weights,
                   "auto, float32 (dequantize at load) or file (keep the file's type, dequantize per layer)")
      ->check(CLI::IsMember({"auto", "float32", "file"}));
  info->callback([model, as_json, hash, weights] {
    model::LoadOptions opts;
    opts.progress = terminal_progress();
    opts.weights = *weights;
    const auto path = resolve_model(*model);
    std::unique_ptr<model::Model> m;
    try {
      m = model::Model::load(path, opts);
    } catch (const Error& e) {
      // The reason in the JSON too, so scripts see why it cannot be loaded.
      if (*as_json) {
        print_json({{"path", path.string()}, {"loadable", false}, {"error", e.what()}});
        throw CLI::RuntimeError(1);
      }
      throw;
    }
    nlohmann::json j = describe(*m);
    j["loadable"] = true;
    j["process_rss_bytes"] = current_rss_bytes();
    if (*hash) j["sha256"] = m->file_sha256();
    print(j, *as_json);
  });

  auto* bench = cmd->add_subcommand("bench", "Load time, prefill time and peak resident memory of a model");
  auto bmodel = std::make_shared<std::string>();
  auto tokens = std::make_shared<int>(512);
  auto bjson = std::make_shared<bool>(false);
  auto bweights = std::make_shared<std::string>("auto");
  bench->add_option("--model", *bmodel, "GGUF file or Hugging Face folder (default: the default model)");
  bench->add_option("--tokens", *tokens, "prefill length in tokens (text of datasets/contexts, repeated)")
      ->check(CLI::Range(1, 1 << 20));
  bench->add_option("--weights", *bweights, "auto, float32 or file (as for model info)")
      ->check(CLI::IsMember({"auto", "float32", "file"}));
  bench->add_flag("--json", *bjson, "print JSON");
  bench->callback([bmodel, tokens, bjson, bweights] {
    model::LoadOptions opts;
    opts.weights = *bweights;
    const auto t0 = std::chrono::steady_clock::now();
    const auto m = model::Model::load(resolve_model(*bmodel), opts);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::int64_t rss_loaded = current_rss_bytes();
    // Real text: the repository's contexts, repeated to length.
    std::string text;
    for (const char* name : {"kjv-genesis.txt", "apache-2.0.txt", "python-textwrap-code.txt"})
      text += read_file(dataset_dir() / "contexts" / name);
    auto base = m->tokenizer().encode(text);
    if (base.empty()) throw Error(ErrorCode::Internal, "the benchmark text encodes to no tokens");
    std::vector<std::int32_t> ids;
    while (static_cast<int>(ids.size()) < *tokens) ids.insert(ids.end(), base.begin(), base.end());
    ids.resize(static_cast<std::size_t>(*tokens));
    model::PrefillOptions po;
    po.want_last_logits = true;
    const auto r = m->prefill(ids, po);
    nlohmann::json j = {{"model", m->config().name},
                        {"path", m->config().path.string()},
                        {"architecture", m->config().architecture},
                        {"weight_storage", m->config().weight_storage},
                        {"threads", m->threads()},
                        {"load_seconds", load_s},
                        {"rss_after_load_bytes", rss_loaded},
                        {"tokens", *tokens},
                        {"prefill_seconds", r.seconds},
                        {"tokens_per_second", *tokens / r.seconds},
                        {"peak_rss_bytes", peak_rss_bytes()}};
    print(j, *bjson);
  });
});

}  // namespace
}  // namespace kvscope::cli
#endif
