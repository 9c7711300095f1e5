// SPDX-License-Identifier: Apache-2.0
#pragma once

// The kernels' fp16 conversion is core's (kvscope/common/fp16.h compiles for
// the device under nvcc): GPU-written fp16 equals what the CPU codec writes.

#include "kvscope/common/fp16.h"

namespace kvscope::kernels::detail {

using ::kvscope::bits_float;
using ::kvscope::float_bits;
using ::kvscope::float_to_half;
using ::kvscope::half_to_float;

}  // namespace kvscope::kernels::detail
