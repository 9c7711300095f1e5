// SPDX-License-Identifier: Apache-2.0
#pragma once

// cachegen settings the GPU kernels implement: layout version 2 with the
// symbol tables shipped in the stream. cachegen's defaults use version 3
// modes (sinks, pre-RoPE keys, coded steps, coarse tables; docs/bitstream.md
// "Version 3") and the model's calibration, which the GPU path refuses with a
// reason (gpu_decode_support, gpu_encode_support) and the CPU handles.

#include <utility>

#include "kvscope/codec/codec.h"

namespace kvscope::kernels::testing {

/// `params` plus, where `params` does not set them, the neutral value of every
/// parameter the kernels do not implement and one bin count for all layers
/// (the kernels read layer groups with their splits, not one count per layer
/// without splits, which the default uses).
inline codec::ParamSet gpu_cachegen_params(codec::ParamSet params = {}) {
  const std::pair<const char*, const char*> neutral[] = {
      {"sinks", "0"},          {"delta_mode", "integer"},  {"anchor_bins", "256"},
      {"step_coding", "fp16"}, {"table_bits", "16"},       {"key_space", "post_rope"},
      {"profile", ""},         {"key_bins", "16"},         {"key_layer_splits", ""},
      {"value_bins", "16"},    {"value_layer_splits", ""}, {"channel_weighting", "off"},
      {"reconstruction", "0"}};
  for (const auto& [k, v] : neutral) params.emplace(k, v);
  return params;
}

}  // namespace kvscope::kernels::testing
