// SPDX-License-Identifier: Apache-2.0
#pragma once

// A model's calibration file: what codecs learn once per model (cachegen's
// symbol tables, its per-layer sensitivity, the transform codec's bases), kept
// in one file of named sections, named by the hash of its bytes and
// referenced from bitstreams by that hash. Layout: docs/bitstream.md section 4.
//
// Each section's payload belongs to the codec feature that wrote it and starts
// with that feature's own version; this file only frames, checks and finds
// sections. Version 1 and 2 files (cachegen tables only) still load: their
// body becomes the section "cachegen.tables" (see kLegacyCachegenSection).

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace kvscope::codec::calibration {

/// Where calibration files live by default: $KVSCOPE_CALIBRATION_DIR, else
/// $KVSCOPE_PROFILE_DIR (older name), else $XDG_CACHE_HOME/kvscope/profiles,
/// else ~/.cache/kvscope/profiles.
std::filesystem::path default_calibration_dir();

/// File name extension of calibration files.
inline constexpr const char* kCalibrationExtension = ".kvsprof";

/// Section name a version 1/2 file's body is presented under, prefixed with
/// its u16 version (the payload "cachegen.tables" sections carry).
inline constexpr const char* kLegacyCachegenSection = "cachegen.tables";

/// Largest section count and name length a file may declare.
inline constexpr std::size_t kMaxSections = 256;

/// One model's calibration, in memory.
struct CalibrationFile {
  std::string model_name;    ///< the model it was computed for (may be empty)
  std::string model_sha256;  ///< that model file's hash (may be empty)
  /// Section name -> payload. Names are 1..255 bytes of [a-z0-9._-].
  std::map<std::string, std::vector<std::uint8_t>> sections;

  /// The payload of `name`, or nullptr.
  const std::vector<std::uint8_t>* find(const std::string& name) const;
};

/// The file bytes (version 3). Deterministic: equal contents give equal
/// bytes, hence equal hashes. Error(InvalidArgument) on a bad section name,
/// more than kMaxSections sections, or a section over 4 GiB.
std::vector<std::uint8_t> serialize(const CalibrationFile& file);

/// Whether bytes start with a calibration file's magic ("KVSP"): tells a
/// calibration from other files a caller accepts in its place.
bool has_calibration_magic(std::span<const std::uint8_t> bytes);

/// Parses and validates file bytes: magic, version (1..3), lengths, the body
/// CRC and every section's CRC, names unique and sorted. `label` names the
/// source in errors. Error(Format | Checksum | Unsupported).
CalibrationFile parse(std::span<const std::uint8_t> bytes, const std::string& label);

/// The hash a bitstream uses to reference a calibration file: 16 lowercase hex
/// digits (FNV-1a 64 of the file bytes).
std::string file_hash(std::span<const std::uint8_t> bytes);

/// Writes bytes to `dir`/<hash>.kvsprof atomically (creating `dir`) and
/// returns the path. Error(Io) on failure.
std::filesystem::path save(std::span<const std::uint8_t> bytes, const std::filesystem::path& dir);

/// Reads and parses a calibration file. Error(Io) naming the path when it
/// cannot be read; parse()'s errors otherwise.
CalibrationFile load(const std::filesystem::path& path);

/// Loads `dir`/<hash>.kvsprof (dir empty = default_calibration_dir()) and checks
/// that its bytes still have that hash. Error(Io) naming the hash and the
/// folder when missing; Error(Checksum) when the content changed.
CalibrationFile load_by_hash(const std::string& hash, const std::filesystem::path& dir);

/// The raw bytes of `dir`/<hash>.kvsprof, checked against the hash as
/// load_by_hash() does (for callers that parse sections themselves).
std::vector<std::uint8_t> read_by_hash(const std::string& hash, const std::filesystem::path& dir);

}  // namespace kvscope::codec::calibration
