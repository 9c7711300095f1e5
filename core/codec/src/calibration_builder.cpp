// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/calibration_builder.h"

#include <chrono>

#include "kvscope/codec/calibration.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/common/error.h"

namespace kvscope::codec::calibration {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// `progress` for one part of the build, mapped onto [from, to] of the whole.
ProgressFn part_of(const ProgressFn& progress, double from, double to) {
  if (!progress) return {};
  return [progress, from, to](double f, std::string_view stage) {
    return progress(from + (to - from) * f, stage);
  };
}

}  // namespace

BuiltCalibration build_calibration_file(const CalibrationSources& sources,
                                        const CalibrationBuildOptions& options) {
  if (sources.contexts.empty() && sources.table_caches.empty())
    throw Error(ErrorCode::InvalidArgument, "calibration needs context caches or table caches");
  const bool weights = !sources.key_weight.empty() || !sources.value_weight.empty();
  if (weights && sources.contexts.empty())
    throw Error(ErrorCode::InvalidArgument,
                "calibration: channel weights need the context caches they were measured on");
  BuiltCalibration out;
  const auto& progress = options.progress;

  // 1. The weighting first: the tables are counted with it.
  if (weights && (options.key_power > 0 || options.value_power > 0)) {
    const auto t0 = std::chrono::steady_clock::now();
    report_progress(progress, 0.0, "channel weighting");
    out.weighting = build_channel_weighting(sources.contexts, sources.key_weight, sources.value_weight,
                                            options.key_power, options.value_power);
    out.file.sections[kChannelWeightingSection] = serialize_channel_weighting(*out.weighting);
    out.weighting_seconds = seconds_since(t0);
  }

  // 2. cachegen's tables, at the given parameters.
  if (!sources.table_caches.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    ParamSet params = options.cachegen;
    params.erase("profile");
    const auto tables = parse(build_profile(sources.table_caches, params,
                                            part_of(progress, 0.05, sources.contexts.empty() ? 1.0 : 0.5),
                                            out.weighting ? &*out.weighting : nullptr),
                              "cachegen tables");
    out.file.sections[kLegacyCachegenSection] = *tables.find(kLegacyCachegenSection);
    out.tables_seconds = seconds_since(t0);
  }

  // 3. The transform codec's bases.
  if (!sources.contexts.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    transform::BuildOptions bo;
    bo.skip_tokens = options.skip_tokens;
    bo.progress = part_of(progress, sources.table_caches.empty() ? 0.05 : 0.5, 1.0);
    out.file.sections[transform::kSectionName] =
        transform::serialize_calibration(transform::build_calibration(sources.contexts, bo));
    out.basis_seconds = seconds_since(t0);
  }

  // 4. The layer sensitivity, for the model whose caches these are.
  if (sources.sensitivity) {
    for (auto caches : {sources.table_caches, sources.contexts})
      for (const auto& c : caches)
        if (c.shape().layers != sources.sensitivity->layers)
          throw Error(ErrorCode::InvalidArgument, "calibration: the sensitivity was measured on " +
                                                      std::to_string(sources.sensitivity->layers) +
                                                      " layers, the caches have " +
                                                      std::to_string(c.shape().layers));
    out.file.sections[kSensitivitySection] = serialize_sensitivity(*sources.sensitivity);
  }

  // The model the file is for: the one whose caches the tables came from, as
  // `calibrate --in` has always named it, else the contexts'.
  for (auto caches : {sources.table_caches, sources.contexts})
    for (const auto& c : caches) {
      if (out.file.model_name.empty()) out.file.model_name = c.info.model_name;
      if (out.file.model_sha256.empty()) out.file.model_sha256 = c.info.model_sha256;
    }
  report_progress(progress, 1.0, "calibration");
  return out;
}

}  // namespace kvscope::codec::calibration
