// SPDX-License-Identifier: Apache-2.0
#pragma once

// Names and record layouts shared by the HDF5 exporter and importer. The
// schema itself is documented in docs/hdf5-format.md; keep the two in step.

#include <cstdint>
#include <filesystem>
#include <string>

namespace kvscope::io::schema {

inline constexpr const char* kModel = "/model";
inline constexpr const char* kContext = "/context";
inline constexpr const char* kLevels = "/levels";
inline constexpr const char* kCalibration = "/calibration";
inline constexpr const char* kReference = "/reference";

inline std::string level_path(int index) {
  return std::string(kLevels) + "/" + std::to_string(index);
}

/// One row of /levels/<i>/sections. Naturally aligned with no padding, so the
/// in-memory bytes equal the packed little-endian file record (56 bytes) and
/// the table's CRC32C is computed over exactly what h5py's tobytes() gives.
struct SectionRow {
  std::uint64_t offset;
  std::uint64_t length;
  std::uint32_t crc32c;
  std::int32_t chunk;
  std::int32_t layer;
  std::int32_t kv;
  std::int32_t token_begin;
  std::int32_t token_end;
  char kind[16];
};
static_assert(sizeof(SectionRow) == 56, "SectionRow must have no padding");

/// The 512-byte user block at the start of every file: ASCII lines
/// "KVSCOPE-HDF5", "format_version=N", "file_bytes=N", "crc32c=XXXXXXXX"
/// (CRC32C of bytes [512, file_bytes)), NUL-padded.
inline constexpr const char* kUserBlockMagic = "KVSCOPE-HDF5\n";

/// Writes the user block of a closed file in place (and fsyncs it).
/// Throws Error(Io) naming `report_name`.
void stamp_user_block(const std::filesystem::path& file, const std::string& report_name, int format_version);

/// Checks the user block: magic, version (Error(Unsupported) when newer than
/// `max_version`), size (Error(Format) when truncated or extended) and CRC
/// (Error(Checksum)). Returns the file size.
std::uint64_t verify_user_block(const std::filesystem::path& file, int max_version);

}  // namespace kvscope::io::schema
