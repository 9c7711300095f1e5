// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace kvscope::cli {

/// Adds one top-level subcommand (and its own subcommands) to the app.
/// The callback set on the subcommand does the work; it reports failure by
/// throwing kvscope::Error, which main() prints and turns into exit code 1.
using CommandSetup = std::function<void(CLI::App& app)>;

/// Registers a command from a static object in its cmd_*.cpp file, so adding
/// a command never touches main.cpp. `order` sorts --help output.
struct CommandRegistrar {
  CommandRegistrar(int order, CommandSetup setup);
};

/// Calls every registered setup, in `order`.
void setup_commands(CLI::App& app);

}  // namespace kvscope::cli
