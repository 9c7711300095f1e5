// SPDX-License-Identifier: Apache-2.0
#pragma once

// File routing shared by `encode`, `decode` and `inspect`: every read and
// write of caches and bitstreams goes through these functions, so another
// container (e.g. HDF5 by extension .h5) is one branch in each.

#include <filesystem>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/raw_cache.h"
#include "cmd_hdf5_io.h"

namespace kvscope::cli {

/// A raw cache to encode (safetensors).
inline kv::KVCache read_cache_file(const std::filesystem::path& path) {
  return io::load_cache(path);
}

/// A decoded cache (safetensors, fp16), written atomically.
inline void write_cache_file(const kv::KVCache& cache, const std::filesystem::path& path) {
  io::save_cache(cache, path, io::RawDtype::F16);
}

/// The bitstream held in `path`: a .kvc file, or level `level` of a .h5
/// container (checksums verified).
inline std::vector<std::uint8_t> read_encoded_file(const std::filesystem::path& path, int level = 0) {
  if (is_hdf5_file(path)) return read_hdf5_bitstream(path, level);
  const std::string bytes = read_file(path);
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

/// Writes an encoded cache to `path` (a .kvc file), atomically.
inline void write_encoded_file(const codec::EncodeResult& result, const codec::CodecConfig& config,
                               const std::filesystem::path& path) {
  (void)config;
  write_file_atomically(path, result.bytes.data(), result.bytes.size());
}

}  // namespace kvscope::cli
