// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helpers shared by the CLI's commands.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"

namespace kvscope::cli {

/// --model's value, or the default model; Error(Io) with fetch instructions
/// when the default model is missing.
std::filesystem::path resolve_model(const std::string& model_option);

/// Parses repeated "--set key=value" options; Error(InvalidArgument) on a
/// malformed entry.
codec::ParamSet parse_settings(const std::vector<std::string>& settings);

/// Prints JSON (2-space indent) to stdout.
void print_json(const nlohmann::json& j);

/// A progress callback that draws "stage 42%" on stderr when it is a terminal.
ProgressFn terminal_progress();

}  // namespace kvscope::cli
