// SPDX-License-Identifier: Apache-2.0
// main() for KVScope's GoogleTest programs: like gtest_main, but first lets
// OpenBLAS use this CPU's fast kernels (model tests are 4-6x slower without).
#include <gtest/gtest.h>

#include "kvscope/common/blas_environment.h"

int main(int argc, char** argv) {
  kvscope::select_blas_kernels(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
