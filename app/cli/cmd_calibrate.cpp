// `kvscope-cli calibrate`: builds a cachegen calibration profile (per-model
// symbol tables) from calibration caches, for `encode --set profile=FILE`.
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "cmd_codec_io.h"
#include "command_registry.h"
#include "kvscope/codec/calibration.h"

namespace kvscope::cli {
namespace {

struct Options {
  std::vector<std::string> in, settings;
  std::string out_dir;
  bool json = false;
};

const CommandRegistrar calibrate_command(240, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("calibrate", "Build a cachegen calibration profile from raw caches of one model");
  cmd->add_option("--in", o->in, "calibration cache (.safetensors), repeatable")->required();
  cmd->add_option("--set", o->settings,
                  "cachegen parameter key=value (bins, splits, group size; repeatable)");
  cmd->add_option("--out-dir", o->out_dir,
                  "folder for the profile (default: the profile folder decoders search)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->callback([o] {
    std::vector<kv::KVCache> caches;
    for (const auto& f : o->in) caches.push_back(read_cache_file(f));
    const auto bytes = codec::calibration::build_profile(caches, parse_settings(o->settings));
    const auto dir =
        o->out_dir.empty() ? codec::calibration::default_profile_dir() : std::filesystem::path(o->out_dir);
    const auto path = codec::calibration::save_profile(bytes, dir);
    const std::string hash = codec::calibration::profile_hash(bytes);
    if (o->json) {
      print_json({{"profile", path.string()}, {"hash", hash}, {"bytes", bytes.size()}});
      return;
    }
    std::cout << path.string() << " (" << bytes.size()
              << " bytes); encode with --set profile=" << path.string() << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
