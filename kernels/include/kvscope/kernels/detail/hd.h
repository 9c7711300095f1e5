// SPDX-License-Identifier: Apache-2.0
#pragma once

// Functions marked KVSCOPE_HD compile for both the host and the device, so
// the CUDA kernels and the CPU reference run literally the same logic. This
// header is plain C++ when nvcc is not the compiler.

#if defined(__CUDACC__)
#define KVSCOPE_HD __host__ __device__ __forceinline__
#else
#define KVSCOPE_HD inline
#endif
