// SPDX-License-Identifier: Apache-2.0
#include "cli_util.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "command_registry.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::cli {

std::filesystem::path resolve_model(const std::string& model_option) {
  if (!model_option.empty()) return model_option;
  if (auto path = find_default_model()) return *path;
  throw Error(ErrorCode::Io, missing_model_help());
}

codec::ParamSet parse_settings(const std::vector<std::string>& settings) {
  codec::ParamSet params;
  for (const auto& s : settings) {
    const auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error(ErrorCode::InvalidArgument, "--set expects key=value, got '" + s + "'");
    params[s.substr(0, eq)] = s.substr(eq + 1);
  }
  return params;
}

namespace {

// `--max-elements N` on every command (given before or after the command's
// name): the largest cache, in values, any decoder or reader of this run
// allocates; larger inputs are refused naming both numbers
// (docs/hostile-input.md). Default: a quarter of the machine's memory.
const CommandRegistrar max_elements_option(0, [](CLI::App& app) {
  app.fallthrough();  // inherited by the commands added after this
  app.add_option_function<std::size_t>(
         "--max-elements", [](const std::size_t& n) { codec::set_default_max_elements(n); },
         "largest cache (values) to decode or load; larger inputs are refused (default: a quarter of this "
         "machine's memory as float32, " +
             std::to_string(codec::default_max_elements()) + " here)")
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 40))
      ->trigger_on_parse();
});

}  // namespace

void print_json(const nlohmann::json& j) {
  std::cout << j.dump(2) << std::endl;
}

ProgressFn terminal_progress() {
  if (!::isatty(STDERR_FILENO)) return {};
  return [](double fraction, std::string_view stage) {
    std::fprintf(stderr, "\r\033[K%.*s %3d%%", int(stage.size()), stage.data(), int(fraction * 100 + 0.5));
    if (fraction >= 1.0) std::fputc('\n', stderr);
    std::fflush(stderr);
    return true;
  };
}

}  // namespace kvscope::cli
