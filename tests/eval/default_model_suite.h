// SPDX-License-Identifier: Apache-2.0
#pragma once

// A test suite that loads the default model once (on the CPU) for all its
// tests, and reads dataset texts. Tests skip through
// KVSCOPE_REQUIRE_DEFAULT_MODEL (test_model.h) when the model is absent.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "kvscope/common/paths.h"
#include "kvscope/model/model.h"
#include "test_model.h"

namespace kvscope::eval {

class DefaultModelSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (auto path = find_default_model()) {
      model::LoadOptions lo;
      lo.device = "cpu";
      model_ = model::Model::load(*path, lo).release();
    }
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  /// The dataset's kjv-genesis context.
  static std::string genesis() {
    return read_file(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "datasets/contexts/kjv-genesis.txt");
  }
  static inline model::Model* model_ = nullptr;
};

}  // namespace kvscope::eval
