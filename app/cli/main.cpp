// SPDX-License-Identifier: Apache-2.0
// kvscope-cli: headless front end over the KVScope core.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "command_registry.h"
#include "kvscope/common/blas_environment.h"
#include "kvscope/common/error.h"
#include "kvscope/common/version.h"

int main(int argc, char** argv) {
  kvscope::select_blas_kernels(argv);  // may re-execute this program; before any thread
  CLI::App app{"kvscope-cli: compute, compress, stream and inspect LLM KV caches", "kvscope-cli"};
  app.set_version_flag("--version", std::string("kvscope-cli ") + kvscope::kVersion);
  app.require_subcommand(1);
  kvscope::cli::setup_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kvscope::Error& e) {
    std::cerr << "kvscope-cli: error: " << e.what() << "\n";
    return e.code() == kvscope::ErrorCode::Cancelled ? 130 : 1;
  } catch (const std::exception& e) {
    std::cerr << "kvscope-cli: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
