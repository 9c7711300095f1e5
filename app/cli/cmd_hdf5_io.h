// SPDX-License-Identifier: Apache-2.0
#pragma once

// The `.h5` branches of `encode`, `decode` and `inspect`: the HDF5
// container (docs/hdf5-format.md). The file extension chooses the container,
// so each command routes through is_hdf5_file() and one call here.

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#if KVSCOPE_HAVE_HDF5
#include "kvscope/io/hdf5_container.h"
#endif

namespace kvscope::cli {

/// What `encode --out FILE.h5` may add beyond the bitstream.
struct Hdf5WriteOptions {
  bool force = false;              ///< replace an existing file
  bool include_reference = false;  ///< store the original cache (fp16, deflate)
  std::string text_file;           ///< store this file's text as the context text
  ProgressFn progress;
};

/// True for ".h5" / ".hdf5" (any case).
inline bool is_hdf5_file(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".h5" || ext == ".hdf5";
}

#if KVSCOPE_HAVE_HDF5

/// Writes `bitstream` (and optionally `original`) as an HDF5 container.
inline void write_hdf5_file(const std::vector<std::uint8_t>& bitstream, const kv::KVCache& original,
                            const std::filesystem::path& path, const Hdf5WriteOptions& options) {
  io::Hdf5Contents contents = io::hdf5_contents_from_bitstream(bitstream);
  io::Hdf5ExportOptions eo;
  eo.overwrite = options.force;
  eo.progress = options.progress;
  if (!options.text_file.empty()) {
    contents.text = read_file(options.text_file);
    eo.include_text = true;
  }
  if (options.include_reference) {
    contents.reference = original;
    eo.include_reference = true;
  }
  io::export_hdf5(path, contents, eo);
}

/// The bitstream of level `level` of an HDF5 container (every checksum verified).
inline std::vector<std::uint8_t> read_hdf5_bitstream(const std::filesystem::path& path, int level) {
  io::Hdf5Contents contents = io::import_hdf5(path);
  if (level < 0 || std::size_t(level) >= contents.levels.size()) {
    throw Error(ErrorCode::InvalidArgument, path.string(),
                "has " + std::to_string(contents.levels.size()) + " level(s); --level " +
                    std::to_string(level) + " does not exist");
  }
  return std::move(contents.levels[std::size_t(level)].bitstream);
}

/// `inspect FILE.h5`: everything the container states, checksums verified.
inline nlohmann::json hdf5_summary_json(const std::filesystem::path& path) {
  const io::Hdf5Contents c = io::import_hdf5(path);
  nlohmann::json levels = nlohmann::json::array();
  for (std::size_t i = 0; i < c.levels.size(); ++i) {
    const auto& l = c.levels[i];
    nlohmann::json sections = nlohmann::json::array();
    for (const auto& s : l.sections) {
      sections.push_back({{"kind", s.kind},
                          {"offset", s.offset},
                          {"length", s.length},
                          {"crc32c", s.crc32c},
                          {"chunk", s.chunk},
                          {"layer", s.layer},
                          {"kv", s.kv},
                          {"token_begin", s.token_begin},
                          {"token_end", s.token_end}});
    }
    const double elements = double(c.shape.elements());
    levels.push_back({{"index", i},
                      {"label", l.label},
                      {"codec", l.config.codec},
                      {"params", l.config.params},
                      {"encoded_bytes", l.bitstream.size()},
                      {"bits_per_element", elements > 0 ? 8.0 * double(l.bitstream.size()) / elements : 0.0},
                      {"ratio_vs_fp16",
                       l.bitstream.empty() ? 0.0 : double(c.shape.fp16_bytes()) / double(l.bitstream.size())},
                      {"sections", sections}});
  }
  nlohmann::json j = {
      {"file", path.string()},
      {"container", "hdf5"},
      {"file_bytes", std::filesystem::file_size(path)},
      {"format", io::kHdf5FormatName},
      {"format_version", c.format_version},
      {"kvscope_version", c.kvscope_version},
      {"created_utc", c.created_utc},
      {"model",
       {{"name", c.info.model_name},
        {"architecture", c.info.architecture},
        {"sha256", c.info.model_sha256},
        {"layers", c.shape.layers},
        {"kv_heads", c.shape.kv_heads},
        {"head_dim", c.shape.head_dim},
        {"tokens", c.shape.tokens},
        {"rope_applied", c.info.rope_applied},
        {"rope_theta", c.info.rope_theta}}},
      {"context",
       {{"token_ids", c.info.token_ids.size()},
        {"positions", c.info.positions.size()},
        {"has_text", c.text.has_value()}}},
      {"levels", levels},
      {"has_reference", c.has_reference},
      {"checksums_verified", true},
  };
  if (c.calibration) {
    j["calibration"] = {
        {"name", c.calibration->name}, {"hash", c.calibration->hash}, {"bytes", c.calibration->bytes.size()}};
  }
  return j;
}

#else

[[noreturn]] inline void no_hdf5(const std::filesystem::path& path) {
  throw Error(ErrorCode::Unsupported, path.string(),
              "this build has no HDF5 support (KVSCOPE_WITH_HDF5=OFF)");
}
inline void write_hdf5_file(const std::vector<std::uint8_t>&, const kv::KVCache&,
                            const std::filesystem::path& path, const Hdf5WriteOptions&) {
  no_hdf5(path);
}
inline std::vector<std::uint8_t> read_hdf5_bitstream(const std::filesystem::path& path, int) {
  no_hdf5(path);
}
inline nlohmann::json hdf5_summary_json(const std::filesystem::path& path) {
  no_hdf5(path);
}

#endif

}  // namespace kvscope::cli
