// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli doctor`: where KVScope looks for its model and data, and
// which optional parts this build has.
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/version.h"
#if defined(KVSCOPE_HAVE_KERNELS)
#include "kvscope/kernels/device.h"
#endif

namespace kvscope::cli {
namespace {

const CommandRegistrar doctor_command(900, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("doctor", "Show model and data locations and the features this build has");
  auto as_json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *as_json, "print JSON");
  cmd->callback([as_json] {
    const auto model = find_default_model();
#if defined(KVSCOPE_HAVE_KERNELS)
    const std::string compute = kernels::compute_backend();  // "cuda:<device>" or "cpu"
    const std::string why_cpu = kernels::cpu_fallback_reason();
#else
    const std::string compute = "cpu";
    const std::string why_cpu = "this build has no CUDA kernels";
#endif
    nlohmann::json j = {
        {"version", kVersion},
        {"default_model", default_model_path().string()},
        {"default_model_present", model.has_value()},
        {"data_dir", data_dir().string()},
        {"compute", compute},
        {"compute_reason", why_cpu},  // why the CPU ("" when a GPU is used)
        {"features",
         {{"torch", bool(KVSCOPE_HAVE_TORCH)},
          {"hdf5", bool(KVSCOPE_HAVE_HDF5)},
          {"cuda", bool(KVSCOPE_HAVE_CUDA)}}},
    };
    if (*as_json) {
      print_json(j);
      return;
    }
    std::cout << "kvscope " << kVersion << "\n"
              << "default model: " << default_model_path().string() << (model ? "" : "  (missing)") << "\n"
              << "data dir:      " << data_dir().string() << "\n"
              << "features:      torch=" << KVSCOPE_HAVE_TORCH << " hdf5=" << KVSCOPE_HAVE_HDF5
              << " cuda=" << KVSCOPE_HAVE_CUDA << "\n"
              << "compute:       " << compute << (why_cpu.empty() ? "" : " (" + why_cpu + ")") << "\n";
    if (!model) std::cout << missing_model_help() << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
