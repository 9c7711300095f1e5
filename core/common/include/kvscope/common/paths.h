// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace kvscope {

/// File name of the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) as
/// scripts/fetch-model.sh stores it.
inline constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Folder holding downloaded models: $KVSCOPE_MODEL_DIR if set, else
/// $XDG_CACHE_HOME/kvscope/models, else ~/.cache/kvscope/models.
std::filesystem::path model_dir();

/// Path of the default model: $KVSCOPE_MODEL if set, else
/// model_dir()/kDefaultModelFile. The file may not exist; see
/// find_default_model().
std::filesystem::path default_model_path();

/// default_model_path() if that file exists, nullopt otherwise.
std::optional<std::filesystem::path> find_default_model();

/// Message telling a user how to obtain the default model.
std::string missing_model_help();

/// Root of read-only data (resources/, datasets/, docs/): $KVSCOPE_DATA_DIR if
/// set, else the install prefix's share/kvscope when it exists next to the
/// running executable, else the source tree this build came from.
std::filesystem::path data_dir();

/// data_dir()/resources and data_dir()/datasets.
std::filesystem::path resource_dir();
std::filesystem::path dataset_dir();

/// Writes `bytes` to `path` atomically: to a temporary file in the same
/// folder, flushed, then renamed over `path`. On failure nothing is left
/// behind and Error(Io) names the file. When `overwrite` is false and `path`
/// exists, throws Error(Io) without touching it.
void write_file_atomically(const std::filesystem::path& path, const void* bytes, std::size_t size,
                           bool overwrite = true);

/// Reads a whole file; Error(Io) naming the file when it cannot be read.
std::string read_file(const std::filesystem::path& path);

}  // namespace kvscope
