// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace kvscope {

/// The OPENBLAS_CORETYPE suited to this CPU ("SkylakeX" with AVX-512,
/// "Haswell" with AVX2 + FMA), or empty when no override is needed.
std::string preferred_blas_coretype();

/// Debian 12's OpenBLAS (0.3.21) does not recognise recent Xeon models and
/// falls back to its generic Prescott kernels, which made every matrix
/// product of the model runtime 4-6x slower on our build machines. OpenBLAS
/// reads OPENBLAS_CORETYPE only when it is loaded, so this sets it and
/// re-executes the program with the same arguments. Call it first thing in
/// main(), before any thread starts. Returns normally (changing nothing) when
/// OPENBLAS_CORETYPE or KVSCOPE_KEEP_BLAS is already set, when the CPU needs
/// no override, or when the re-execution fails.
void select_blas_kernels(char** argv);

}  // namespace kvscope
