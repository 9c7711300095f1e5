#include "cli_util.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

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

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

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
