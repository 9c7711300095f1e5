// SPDX-License-Identifier: Apache-2.0
#pragma once
// A `transform` calibration file (as `kvscope-cli calibrate` writes it) in a
// fresh temporary folder, removed again with the object: the bases of one
// cache and, when given, extra sections (a channel weighting).

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/transform_basis.h"

namespace kvscope::codec::test {

struct TempTransformCalibration {
  std::filesystem::path dir, file;
  /// `name` makes the folder unique per test.
  TempTransformCalibration(const kv::KVCache& cache, const std::string& name,
                           std::map<std::string, std::vector<std::uint8_t>> extra = {}) {
    dir = std::filesystem::temp_directory_path() / ("kvscope-transform-test-" + name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::vector<kv::KVCache> caches = {cache};
    calibration::CalibrationFile f;
    f.sections = std::move(extra);
    f.sections[transform::kSectionName] =
        transform::serialize_calibration(transform::build_calibration(caches));
    file = calibration::save(calibration::serialize(f), dir);
  }
  ~TempTransformCalibration() { std::filesystem::remove_all(dir); }
  TempTransformCalibration(const TempTransformCalibration&) = delete;
  TempTransformCalibration& operator=(const TempTransformCalibration&) = delete;
};

}  // namespace kvscope::codec::test
