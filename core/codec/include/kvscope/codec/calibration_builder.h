// SPDX-License-Identifier: Apache-2.0
#pragma once

// Assembling a model's calibration file (docs/bitstream.md section 4) from
// what calibration measured: the caches of calibration contexts run through
// the model and the channel weights the model measured on them. The CLI
// (`kvscope-cli calibrate`) and the app ("Calibrate from this context") both
// build their files here, so the two write the same sections the same way.
// Free of libtorch: the weights come in as plain floats.

#include <optional>
#include <span>
#include <string>

#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::codec::calibration {

/// What a calibration is built from. The spans are read during the call only.
struct CalibrationSources {
  /// Caches of the calibration contexts with keys before RoPE (rope_applied
  /// false, as PrefillOptions::keep_pre_rope_keys gives them): the transform
  /// bases and the channel weighting's bins factor. Empty: neither is built.
  std::span<const kv::KVCache> contexts;
  /// The channel weights the model measured on `contexts` (the model
  /// runtime's ChannelWeights: [layer][kv_head * head_dim], >= 0). Both
  /// empty: no weighting.
  std::span<const float> key_weight, value_weight;
  /// Caches cachegen's symbol tables are counted on, as encoders get them
  /// (keys after RoPE, or before with rope_applied false). Empty: no tables.
  std::span<const kv::KVCache> table_caches;
  /// A layer sensitivity measured on the model (kvscope/codec/bin_plan.h),
  /// kept in the file for plans and the app's Layer Sensitivity view; null:
  /// none.
  const LayerSensitivity* sensitivity = nullptr;
};

/// How a calibration is built.
struct CalibrationBuildOptions {
  /// The cachegen parameters the tables are counted at (bins, layer splits,
  /// scale, key space, channel_weighting, ...; missing keys take their
  /// defaults). `profile` is ignored: the tables are counted, not read.
  ParamSet cachegen;
  /// Powers of the channel weighting on keys and values
  /// (build_channel_weighting()); both 0: no weighting. The defaults are the
  /// measured best (docs/cachegen-defaults.md).
  double key_power = 0.5, value_power = 0.0;
  /// Leading tokens of each context left out of the transform statistics
  /// (attention sinks).
  int skip_tokens = 1;
  ProgressFn progress;
};

/// A built calibration and what each part took.
struct BuiltCalibration {
  CalibrationFile file;
  /// The weighting the file's kChannelWeightingSection holds (nullopt: none).
  std::optional<ChannelWeighting> weighting;
  double weighting_seconds = 0, tables_seconds = 0, basis_seconds = 0;
};

/// Builds one calibration file, its sections in this order:
///  1. kChannelWeightingSection when `contexts` and the weights are given and
///     a power is > 0: build_channel_weighting(contexts, key_weight,
///     value_weight, key_power, value_power);
///  2. kLegacyCachegenSection ("cachegen.tables") when `table_caches` is not
///     empty: build_profile(table_caches, cachegen, progress, weighting), so
///     with channel_weighting=calibrated (the default) the tables are counted
///     on the values weighted as 1. makes encoders weight them (table version
///     4) and fit the streams of an encoder given this file as `profile`;
///  3. transform::kSectionName ("transform.basis") when `contexts` is not
///     empty: transform::build_calibration(contexts) with skip_tokens;
///  4. kSensitivitySection ("cachegen.sensitivity") when `sensitivity` is
///     given: serialize_sensitivity(*sensitivity).
/// model_name and model_sha256 are the first non-empty ones of the table
/// caches' infos, then the contexts'. Deterministic: equal inputs give equal
/// file bytes. Error(InvalidArgument) when there is neither a context nor a
/// table cache, when weights are given without contexts, when the
/// sensitivity was measured on another layer count than the caches have, and
/// the errors of
/// the three builders (shapes that differ, weights of another size, keys
/// after RoPE among `contexts`, delta_mode=float tables, ...);
/// Error(Cancelled) from `progress`.
BuiltCalibration build_calibration_file(const CalibrationSources& sources,
                                        const CalibrationBuildOptions& options = {});

}  // namespace kvscope::codec::calibration
