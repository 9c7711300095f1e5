// SPDX-License-Identifier: Apache-2.0
#pragma once

// GPU-versus-CPU equivalence checks, runnable without GoogleTest: the
// GoogleTest suite (tests/kernels) runs each as a test, and
// `kvscope-gpu-bench --check` runs them on GPU machines that have only CMake,
// a compiler and CUDA (scripts/device-check.sh).

#include <functional>
#include <string>
#include <vector>

namespace kvscope::kernels::checks {

struct Check {
  std::string name;  ///< identifier-like, usable as a test name
  std::string what;  ///< one line
  /// Returns "" on success, else what differed. May throw kvscope::Error
  /// (counted as a failure). Needs a CUDA device.
  std::function<std::string()> run;
};

/// Every check, in a stable order.
const std::vector<Check>& all_checks();

}  // namespace kvscope::kernels::checks
