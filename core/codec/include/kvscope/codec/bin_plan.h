// SPDX-License-Identifier: Apache-2.0
#pragma once

// Bits where they matter: cachegen bins per (layer, K|V) derived from a
// model's measured sensitivity (how much the continuation's KL grows when one
// layer's keys or values alone are quantized more coarsely), instead of three
// fixed layer groups. The sensitivity is measured by core/eval
// (kvscope/eval/sensitivity.h, which needs the model), kept as a file of its
// own (`kvscope-cli sensitivity --out`) and in the model's calibration as
// section "cachegen.sensitivity" (`kvscope-cli calibrate --sensitivity`;
// serialised below, docs/bitstream.md section 4).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"

namespace kvscope::codec {

/// One model's measured sensitivity to coarser bins, layer by layer.
struct LayerSensitivity {
  int layers = 0;
  int base_bins = 0;    ///< bins of every (layer, kind) in the base configuration
  int coarse_bins = 0;  ///< bins of the one (layer, kind) coarsened at a time
  double base_kl = 0;   ///< mean KL (nats) of the base configuration
  /// Mean KL increase over the base when layer l's keys (values) alone use
  /// coarse_bins; one entry per layer. May be slightly negative (noise).
  std::vector<double> key_kl, value_kl;
  /// The other cachegen parameters of the measurement ("k=v;k=v"), contexts
  /// measured, context tokens and scored continuation tokens.
  std::string params;
  std::vector<std::string> contexts;
  int context_tokens = 0, scored_tokens = 0;
};

/// Name of the calibration file section that holds a sensitivity.
inline constexpr const char* kSensitivitySection = "cachegen.sensitivity";

/// Section bytes ("cachegen.sensitivity", version 1) and back. Parsing checks
/// every length and value (Error(Format) naming `label`).
std::vector<std::uint8_t> serialize_sensitivity(const LayerSensitivity& s);
LayerSensitivity parse_sensitivity(std::span<const std::uint8_t> bytes, const std::string& label);

/// The sensitivity in a file: a calibration file (its magic "KVSP") with a
/// kSensitivitySection, or the section bytes alone. Error(Io) naming the path
/// when it cannot be read; Error(Format) naming it when a calibration file has
/// no sensitivity; the parsers' errors otherwise.
LayerSensitivity load_sensitivity(const std::filesystem::path& path);

/// The sensitivity kept in the calibration folder's first calibration of the
/// cache's model that has one (by model hash, else name; the folder as
/// decoders search it), or nullopt. Error(Format) naming the file when that
/// section is damaged.
std::optional<LayerSensitivity> find_model_sensitivity(const kv::CacheInfo& info);

/// Bins per layer for keys and values.
struct BinPlan {
  std::vector<int> key_bins, value_bins;
};

/// The plan at `level`: with weight w = max(kl increase, floor) / (1/Mc^2 -
/// 1/Mb^2) per (layer, kind) (a quantization noise model: KL ~ w / M^2),
/// M = 2^level * sqrt(w / geometric mean of w), bins = 2 (round(M) + 1)
/// clamped to [4, 256]. Minimises the modelled KL for the mean log2 M that
/// `level` sets (more bits where the KL grows fastest). Error(InvalidArgument)
/// on an empty or inconsistent sensitivity.
BinPlan plan_bins(const LayerSensitivity& s, double level);

/// cachegen parameters of a plan: per-layer key_bins and value_bins with
/// empty layer splits.
ParamSet plan_params(const BinPlan& plan);

/// The plan (searched over `level`) whose encoding of `cache` with cachegen,
/// `base` parameters and the plan's bins has the most bits per element not
/// above `target_bits` (the coarsest plan when none fits). Encodes the cache
/// about a dozen times. Errors: as plan_bins and encode.
BinPlan plan_for_budget(const kv::KVCache& cache, const ParamSet& base, const LayerSensitivity& s,
                        double target_bits, const EncodeOptions& options = {});

}  // namespace kvscope::codec
