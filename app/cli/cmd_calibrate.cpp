// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli calibrate`: builds a model's calibration file: cachegen's
// per-model symbol tables from calibration caches (--in; `encode --set
// profile=FILE`) and the `transform` codec's PCA bases from text contexts run
// through the model (--context, keys before RoPE; `--set calibration=FILE`),
// as sections of one file (kvscope/codec/calibration_file.h).
#include <chrono>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "cmd_codec_io.h"
#include "command_registry.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/transform_basis.h"
#if KVSCOPE_HAVE_TORCH
#include "kvscope/eval/dataset.h"
#include "kvscope/model/model.h"
#endif

namespace kvscope::cli {
namespace {

struct Options {
  std::vector<std::string> in, settings, contexts;
  std::string out_dir, model;
  int max_tokens = 2048, skip_tokens = 1;
  bool json = false;
};

#if KVSCOPE_HAVE_TORCH
// Pre-RoPE caches of the contexts (dataset ids or files), each cut to max_tokens.
std::vector<kv::KVCache> prefill_contexts(const Options& o, std::string& model_name, std::string& model_sha) {
  model::LoadOptions lo;
  lo.hash_file = true;
  const auto m = model::Model::load(resolve_model(o.model), lo);
  model_name = m->config().name;
  model_sha = m->file_sha256();
  std::vector<kv::KVCache> caches;
  for (const auto& ctx : o.contexts) {
    const std::string text = eval::load_context_text(ctx);
    auto ids = m->tokenizer().encode(text, m->tokenizer().adds_bos());
    if (o.max_tokens > 0 && int(ids.size()) > o.max_tokens) ids.resize(o.max_tokens);
    if (ids.empty()) throw Error(ErrorCode::InvalidArgument, ctx, "context has no tokens");
    model::PrefillOptions po;
    po.keep_pre_rope_keys = true;
    po.want_last_logits = false;
    po.progress = terminal_progress();
    caches.push_back(std::move(*m->prefill(ids, po).pre_rope));
  }
  return caches;
}
#endif

const CommandRegistrar calibrate_command(240, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Build a model's calibration: cachegen tables from raw caches (--in), transform bases from "
      "text contexts (--context)");
  cmd->add_option("--in", o->in, "calibration cache (.safetensors) for cachegen tables, repeatable");
  cmd->add_option("--set", o->settings,
                  "cachegen parameter key=value (bins, splits, group size; repeatable)");
#if KVSCOPE_HAVE_TORCH
  cmd->add_option("--context", o->contexts,
                  "text context (dataset id or file) run through the model for the transform codec's PCA "
                  "bases, repeatable");
  cmd->add_option("--model", o->model, "model for --context (default: the default model)");
  cmd->add_option("--max-tokens", o->max_tokens, "tokens kept per context (0 = all)")->capture_default_str();
  cmd->add_option("--skip-tokens", o->skip_tokens,
                  "leading tokens of each context left out of the transform statistics (attention sinks)")
      ->capture_default_str();
#endif
  cmd->add_option("--out-dir", o->out_dir,
                  "folder for the calibration files (default: the folder decoders search)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->callback([o] {
    if (o->in.empty() && o->contexts.empty())
      throw Error(ErrorCode::InvalidArgument,
                  "calibrate needs --in caches (cachegen tables) or --context texts (transform bases)");
    const auto dir = o->out_dir.empty() ? codec::calibration::default_calibration_dir()
                                        : std::filesystem::path(o->out_dir);
    // One file per model: cachegen's tables and the transform bases are sections of it.
    codec::calibration::CalibrationFile file;
    nlohmann::json report;
    if (!o->in.empty()) {
      std::vector<kv::KVCache> caches;
      for (const auto& f : o->in) caches.push_back(read_cache_file(f));
      file = codec::calibration::parse(codec::calibration::build_profile(caches, parse_settings(o->settings)),
                                       "cachegen tables");
    }
#if KVSCOPE_HAVE_TORCH
    if (!o->contexts.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      std::string model_name, model_sha;
      const auto caches = prefill_contexts(*o, model_name, model_sha);
      const auto t1 = std::chrono::steady_clock::now();
      codec::transform::BuildOptions bo;
      bo.skip_tokens = o->skip_tokens;
      bo.progress = terminal_progress();
      file.sections[codec::transform::kSectionName] =
          codec::transform::serialize_calibration(codec::transform::build_calibration(caches, bo));
      if (file.model_name.empty()) file.model_name = model_name;
      if (file.model_sha256.empty()) file.model_sha256 = model_sha;
      std::size_t tokens = 0;
      for (const auto& c : caches) tokens += std::size_t(c.shape().tokens);
      report["transform"] = {
          {"contexts", o->contexts},
          {"tokens", tokens},
          {"prefill_seconds", std::chrono::duration<double>(t1 - t0).count()},
          {"basis_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count()}};
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
