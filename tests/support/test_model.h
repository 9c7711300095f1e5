// SPDX-License-Identifier: Apache-2.0
#pragma once

// Locating the default model in tests. Tests that need it call
// KVSCOPE_REQUIRE_DEFAULT_MODEL(path): it skips with a reason when the model
// is absent, unless KVSCOPE_REQUIRE_MODEL=1 (set by CI), where a missing
// model is a failure, not a silent skip.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "kvscope/common/paths.h"

namespace kvscope::test {

inline bool model_required() {
  const char* v = std::getenv("KVSCOPE_REQUIRE_MODEL");
  return v != nullptr && std::string(v) == "1";
}

}  // namespace kvscope::test

#define KVSCOPE_REQUIRE_DEFAULT_MODEL(path_var)                                                   \
  std::filesystem::path path_var;                                                                 \
  do {                                                                                            \
    auto found_model_ = ::kvscope::find_default_model();                                          \
    if (!found_model_) {                                                                          \
      if (::kvscope::test::model_required()) FAIL() << ::kvscope::missing_model_help();           \
      GTEST_SKIP() << "default model absent: " << ::kvscope::missing_model_help();                \
    }                                                                                             \
    path_var = *found_model_;                                                                     \
  } while (0)
