// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli calibrate`: builds a model's calibration file: cachegen's
// per-model symbol tables from calibration caches (--in; `encode --set
// profile=FILE`) and the `transform` codec's PCA bases from text contexts run
// through the model (--context, keys before RoPE; `--set calibration=FILE`),
// and from the same contexts cachegen's channel weighting (the queries'
// channel energies; the tables from --in are then counted weighted), as
// sections of one file (kvscope/codec/calibration_file.h).
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>

#include "cli_util.h"
#include "cmd_codec_io.h"
#include "command_registry.h"
#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/calibration_builder.h"
#include "kvscope/codec/calibration_file.h"
#if KVSCOPE_HAVE_TORCH
#include "kvscope/eval/dataset.h"
#include "kvscope/model/model.h"
#endif

namespace kvscope::cli {
namespace {

struct Options {
  std::vector<std::string> in, settings, contexts;
  std::string out_dir, model, sensitivity;
  int max_tokens = 2048, skip_tokens = 1;
  double key_weighting = 0.5, value_weighting = 0.0;
  bool json = false;
};

#if KVSCOPE_HAVE_TORCH
struct Prefilled {
  std::vector<kv::KVCache> caches;              // keys before RoPE
  std::vector<float> key_weight, value_weight;  // ChannelWeights, token-weighted mean over the contexts
};

// Pre-RoPE caches of the contexts (dataset ids or files), each cut to
// max_tokens, and the model's channel weights measured on them.
Prefilled prefill_contexts(const Options& o) {
  model::LoadOptions lo;
  lo.hash_file = true;
  const auto m = model::Model::load(resolve_model(o.model), lo);
  Prefilled out;
  std::vector<double> key, value;
  double tokens = 0;
  for (const auto& ctx : o.contexts) {
    const std::string text = eval::load_context_text(ctx);
    auto ids = m->tokenizer().encode(text, m->tokenizer().adds_bos());
    if (o.max_tokens > 0 && int(ids.size()) > o.max_tokens) ids.resize(o.max_tokens);
    if (ids.empty()) throw Error(ErrorCode::InvalidArgument, ctx, "context has no tokens");
    model::PrefillOptions po;
    po.keep_pre_rope_keys = true;
    po.measure_channel_weights = true;
    po.want_last_logits = false;
    po.progress = terminal_progress();
    auto r = m->prefill(ids, po);
    const auto& w = *r.channel_weights;
    key.resize(w.key.size(), 0.0);
    value.resize(w.value.size(), 0.0);
    for (std::size_t i = 0; i < w.key.size(); ++i) key[i] += double(w.key[i]) * double(ids.size());
    for (std::size_t i = 0; i < w.value.size(); ++i) value[i] += double(w.value[i]);
    tokens += double(ids.size());
    out.caches.push_back(std::move(*r.pre_rope));
  }
  for (double k : key) out.key_weight.push_back(float(k / tokens));
  for (double v : value) out.value_weight.push_back(float(v / double(o.contexts.size())));
  return out;
}
#endif

const CommandRegistrar calibrate_command(240, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Build a model's calibration: cachegen tables from raw caches (--in), transform bases and "
      "cachegen channel weighting from text contexts (--context)");
  cmd->add_option("--in", o->in, "calibration cache (.safetensors) for cachegen tables, repeatable");
  cmd->add_option("--set", o->settings,
                  "cachegen parameter key=value (bins, splits, group size; repeatable)");
#if KVSCOPE_HAVE_TORCH
  cmd->add_option("--context", o->contexts,
                  "text context (dataset id or file) run through the model for the transform codec's PCA "
                  "bases and cachegen's channel weighting, repeatable");
  cmd->add_option("--model", o->model, "model for --context (default: the default model)");
  cmd->add_option("--max-tokens", o->max_tokens, "tokens kept per context (0 = all)")->capture_default_str();
  cmd->add_option("--key-weighting", o->key_weighting,
                  "cachegen channel weighting of keys from the contexts' queries: the power on the weights "
                  "(0 = none; docs/bitstream.md \"cachegen channel weighting\")")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--value-weighting", o->value_weighting,
                  "the same for values, from the output projection (0 = none)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--skip-tokens", o->skip_tokens,
                  "leading tokens of each context left out of the transform statistics (attention sinks)")
      ->capture_default_str();
#endif
  cmd->add_option("--sensitivity", o->sensitivity,
                  "layer sensitivity to keep in the calibration (`kvscope-cli sensitivity --out`), for plans "
                  "and the app's Layer Sensitivity view");
  cmd->add_option("--out-dir", o->out_dir,
                  "folder for the calibration files (default: the folder decoders search)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->callback([o] {
    if (o->in.empty() && o->contexts.empty())
      throw Error(ErrorCode::InvalidArgument,
                  "calibrate needs --in caches (cachegen tables) or --context texts (transform bases)");
    const auto dir = o->out_dir.empty() ? codec::calibration::default_calibration_dir()
                                        : std::filesystem::path(o->out_dir);
    nlohmann::json report;
    // One file per model: its sections are assembled as the app assembles
    // them (kvscope/codec/calibration_builder.h).
    codec::calibration::CalibrationSources sources;
    codec::calibration::CalibrationBuildOptions options;
    options.cachegen = parse_settings(o->settings);
    options.key_power = o->key_weighting;
    options.value_power = o->value_weighting;
    options.skip_tokens = o->skip_tokens;
    options.progress = terminal_progress();
    std::optional<codec::LayerSensitivity> sensitivity;
    if (!o->sensitivity.empty()) {
      sensitivity = codec::load_sensitivity(o->sensitivity);
      sources.sensitivity = &*sensitivity;
    }
#if KVSCOPE_HAVE_TORCH
    std::optional<Prefilled> prefilled;
    if (!o->contexts.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      prefilled = prefill_contexts(*o);
      report["prefill_seconds"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      sources.contexts = prefilled->caches;
      sources.key_weight = prefilled->key_weight;
      sources.value_weight = prefilled->value_weight;
    }
#endif
    std::vector<kv::KVCache> table_caches;
    for (const auto& f : o->in) table_caches.push_back(read_cache_file(f));
    sources.table_caches = table_caches;
    const auto built = codec::calibration::build_calibration_file(sources, options);
    const auto& file = built.file;
#if KVSCOPE_HAVE_TORCH
    if (prefilled) {
      std::size_t tokens = 0;
      for (const auto& c : prefilled->caches) tokens += std::size_t(c.shape().tokens);
      report["transform"] = {{"contexts", o->contexts},
                             {"tokens", tokens},
                             {"prefill_seconds", report["prefill_seconds"]},
                             {"basis_seconds", built.basis_seconds}};
    }
#endif
    const auto bytes = codec::calibration::serialize(file);
    const auto path = codec::calibration::save(bytes, dir);
    report["calibration"] = path.string();
    report["hash"] = codec::calibration::file_hash(bytes);
    report["bytes"] = bytes.size();
    std::vector<std::string> names;
    for (const auto& [name, payload] : file.sections) names.push_back(name);
    report["sections"] = names;
    if (o->json) {
      print_json(report);
      return;
    }
    std::cout << path.string() << " (" << bytes.size() << " bytes)\n";
    if (!o->in.empty()) std::cout << "  cachegen: encode with --set profile=" << path.string() << "\n";
    if (!o->contexts.empty())
      std::cout << "  transform: encode with --set calibration=" << path.string() << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
