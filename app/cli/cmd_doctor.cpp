// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli doctor`: where KVScope looks for its model, data and
// calibration, and which optional parts this build has.
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/version.h"
#if defined(KVSCOPE_HAVE_KERNELS)
#include "kvscope/kernels/device.h"
#endif
#if KVSCOPE_HAVE_TORCH
#include "kvscope/model/model.h"
#endif

namespace kvscope::cli {
namespace {

const CommandRegistrar doctor_command(900, [](CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "doctor", "Show model, data and calibration locations and the features this build has");
  auto as_json = std::make_shared<bool>(false);
  auto model_file = std::make_shared<std::string>();
  cmd->add_flag("--json", *as_json, "print JSON");
  cmd->add_option("--model", *model_file, "whose calibration to look for (default: the default model)");
  cmd->callback([as_json, model_file] {
    const auto model = find_default_model();
    // The model's calibration: cachegen's defaults take their channel
    // weighting and tables from it, and run without both when there is none.
    const auto calibration_dir = codec::calibration::default_calibration_dir();
    nlohmann::json calibrations = nlohmann::json::array();
    bool looked = false;
#if KVSCOPE_HAVE_TORCH
    const std::optional<std::filesystem::path> whose =
        model_file->empty() ? model : std::optional<std::filesystem::path>(*model_file);
    if (whose) {
      kv::CacheInfo info;
      info.model_sha256 = model::model_file_sha256(*whose);
      for (const auto& f : codec::calibration::model_calibration_files(info))
        calibrations.push_back(f.string());
      looked = true;
    }
#else
    (void)model_file;  // without the model runtime no model is identified
#endif
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
        {"calibration_dir", calibration_dir.string()},
        {"model_calibrations", calibrations},  // the model's files there (none: [])
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
              << "compute:       " << compute << (why_cpu.empty() ? "" : " (" + why_cpu + ")") << "\n"
              << "calibration:   " << calibration_dir.string() << "\n";
    for (const auto& f : calibrations)
      std::cout << "               the model's: " << f.get<std::string>() << "\n";
    if (looked && calibrations.empty())
      std::cout
          << "               none for the model: cachegen's defaults run without channel weighting and "
             "ship their tables\n"
             "               (scripts/calibrate-default.sh builds the default model's; docs/results.md)\n";
    if (!model) std::cout << missing_model_help() << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
