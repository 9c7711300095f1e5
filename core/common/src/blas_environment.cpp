// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/blas_environment.h"

#include <unistd.h>

#include <cstdlib>

namespace kvscope {

std::string preferred_blas_coretype() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return {};
}

void select_blas_kernels(char** argv) {
  if (argv == nullptr || argv[0] == nullptr) return;
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || std::getenv("KVSCOPE_KEEP_BLAS") != nullptr) return;
  const std::string coretype = preferred_blas_coretype();
  if (coretype.empty()) return;
  ::setenv("OPENBLAS_CORETYPE", coretype.c_str(), 1);
  // Marks the re-executed process so a failing exec can never loop.
  ::setenv("KVSCOPE_KEEP_BLAS", "1", 1);
  ::execv("/proc/self/exe", argv);
  // exec failed: carry on with the kernels OpenBLAS chose.
}

}  // namespace kvscope
