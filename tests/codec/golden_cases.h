// SPDX-License-Identifier: Apache-2.0
#pragma once

// The golden bitstreams: which cache and parameters each was made from.
// tests/codec/make_golden.cpp writes them; golden_test.cpp checks them.

#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"

namespace kvscope::codec::test {

struct GoldenCase {
  std::string file;  ///< under tests/codec/golden/
  CodecConfig config;
  /// Written by an older encoder (an older codec layout version): it must keep
  /// decoding, but today's encoder no longer produces it.
  bool legacy = false;
};

inline kv::KVCache golden_cache() {
  auto c = synthetic_cache({3, 2, 24, 8}, 2024);
  c.info.model_name = "golden";
  for (int t = 0; t < 24; ++t) c.info.token_ids.push_back(1000 + t);
  return c;
}

/// Every cachegen parameter a golden depends on, as the layout version 2
/// defaults of 2026-11-28 (3 layers), with `changes` on top: goldens must not
/// move when the codec's defaults do.
inline ParamSet cachegen_params(const ParamSet& changes) {
  ParamSet p = {{"chunk_tokens", "16"},      {"group_size", "5"},        {"key_bins", "16,24,24"},
                {"key_layer_splits", "1,2"}, {"value_bins", "16,10"},    {"value_layer_splits", "1"},
                {"scale", "token"},          {"delta", "auto"},          {"sinks", "0"},
                {"delta_mode", "integer"},   {"anchor_bins", "256"},     {"step_coding", "fp16"},
                {"table_bits", "16"},        {"key_space", "post_rope"}, {"profile", ""},
                {"reconstruction", "0"}};
  for (const auto& [k, v] : changes) p[k] = v;
  return p;
}

inline std::vector<GoldenCase> golden_cases() {
  return {
      {"fp16.kvc", {"fp16", {{"chunk_tokens", "16"}}}},
      {"int8.kvc", {"int8", {{"chunk_tokens", "16"}}}},
      {"int4.kvc", {"int4", {{"chunk_tokens", "16"}}}},
      {"cachegen-v1.kvc", {"cachegen", {{"chunk_tokens", "16"}, {"group_size", "5"}}}, true},
      {"cachegen.kvc", {"cachegen", cachegen_params({})}},
      {"cachegen-head-delta.kvc", {"cachegen", cachegen_params({{"scale", "head"}, {"delta", "always"}})}},
      // The v1 golden's settings (the bins defaults of its time) at
      // scale=channel: decodes to the same values as cachegen-v1.kvc.
      {"cachegen-channel.kvc",
       {"cachegen",
        cachegen_params({{"scale", "channel"}, {"key_bins", "32,16,16"}, {"value_bins", "32,16"}})}},
      // Layout version 3 modes (docs/bitstream.md "cachegen", "Version 3").
      {"cachegen-v3-sinks-coded.kvc",
       {"cachegen", cachegen_params({{"sinks", "3"}, {"step_coding", "coded"}, {"table_bits", "12"}})}},
      {"cachegen-v3-float.kvc",
       {"cachegen",
        cachegen_params(
            {{"delta_mode", "float"}, {"anchor_bins", "64"}, {"scale", "head"}, {"sinks", "18"}})}},
      {"cachegen-v3-per-layer.kvc",
       {"cachegen", cachegen_params({{"sinks", "1"},
                                     {"key_bins", "8,16,32"},
                                     {"key_layer_splits", ""},
                                     {"value_bins", "32,16,8"},
                                     {"value_layer_splits", ""}})}},
      {"cachegen-v3-pre-rope.kvc",
       {"cachegen", cachegen_params({{"sinks", "2"}, {"key_space", "pre_rope"}})}},
      // Layout version 5: centroid reconstruction (docs/bitstream.md "cachegen", "Version 5").
      {"cachegen-v5-centroid.kvc",
       {"cachegen",
        cachegen_params(
            {{"sinks", "1"}, {"step_coding", "coded"}, {"table_bits", "10"}, {"reconstruction", "0.75"}})}},
      {"cachegen-lmcache.kvc", {"cachegen-lmcache", {{"chunk_tokens", "16"}}}},
      {"kivi2.kvc", {"kivi2", {{"chunk_tokens", "16"}, {"group_size", "4"}, {"residual_tokens", "6"}}}},
      // The cache's own PCA basis shipped in Table sections (no calibration file needed).
      // key_weight and value_gain as these files were written (layout version
      // 1, before value gains; key_weight's default was 0.35 then).
      {"transform.kvc",
       {"transform", {{"chunk_tokens", "16"}, {"bits", "3"}, {"key_weight", "0.35"}, {"value_gain", "0"}}}},
      {"transform-head.kvc",
       {"transform",
        {{"chunk_tokens", "16"},
         {"bits", "2"},
         {"key_weight", "0.35"},
         {"value_gain", "0"},
         {"grouping", "head"},
         {"sink_tokens", "2"},
         {"recent_tokens", "3"}}}},
  };
}

}  // namespace kvscope::codec::test
