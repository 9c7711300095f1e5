// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared helpers for the HDF5 container tests: temporary folders, small
// deterministic caches, encoding with a codec, and byte-level file edits.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/fp16.h"
#include "kvscope/io/hdf5_container.h"

namespace kvscope::test {

/// A fresh empty folder, removed with its contents at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("kvscope-io-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  /// Names of the entries in the folder (to prove nothing was left behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      out.push_back(e.path().filename().string());
    return out;
  }

 private:
  std::filesystem::path path_;
};

/// Small cache with smooth-ish, token-correlated values (what codecs expect),
/// rounded to fp16, with token ids and positions.
inline kv::KVCache make_cache(kv::CacheShape shape = {2, 2, 24, 16}, unsigned seed = 7) {
  kv::KVCache cache(shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  for (int l = 0; l < shape.layers; ++l)
    for (auto kind : kv::kKinds)
      for (int h = 0; h < shape.kv_heads; ++h)
        for (int d = 0; d < shape.head_dim; ++d) {
          float v = noise(rng) * 4.0f;
          for (int t = 0; t < shape.tokens; ++t) {
            v = 0.8f * v + noise(rng);
            cache.at(l, kind, h, t, d) = v;
          }
        }
  cache.round_to_fp16();
  cache.info.model_name = "SmolLM2-135M-Instruct";
  cache.info.architecture = "llama";
  cache.info.model_sha256 = std::string(64, 'a');
  cache.info.rope_theta = 100000.0;
  for (int t = 0; t < shape.tokens; ++t) {
    cache.info.token_ids.push_back(1000 + t);
    cache.info.positions.push_back(t);
  }
  return cache;
}

/// Contents with one level encoded by `codec_name` at its defaults.
inline io::Hdf5Contents contents_for(const kv::KVCache& cache, const std::string& codec_name) {
  io::Hdf5Contents c;
  c.shape = cache.shape();
  c.info = cache.info;
  io::Hdf5Level level;
  level.config.codec = codec_name;
  level.bitstream = codec::encode(cache, level.config).bytes;
  level.label = "only level";
  c.levels.push_back(std::move(level));
  return c;
}

inline std::vector<std::uint8_t> read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void write_all(const std::filesystem::path& p, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

/// Rewrites the 512-byte KVScope block after an edit, as a file written by a
/// (hypothetical) buggy or newer exporter would carry it. Written from the
/// documented format, independently of the exporter's code.
inline void restamp(const std::filesystem::path& p, int version = io::kHdf5FormatVersion) {
  auto bytes = read_all(p);
  ASSERT_GE(bytes.size(), 512u);
  const std::uint32_t crc = crc32c(std::span(bytes).subspan(512));
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", crc);
  const std::string text = "KVSCOPE-HDF5\nformat_version=" + std::to_string(version) +
                           "\nfile_bytes=" + std::to_string(bytes.size()) + "\ncrc32c=" + hex + "\n";
  std::fill(bytes.begin(), bytes.begin() + 512, 0);
  std::copy(text.begin(), text.end(), bytes.begin());
  write_all(p, bytes);
}

/// True when two caches hold the same float bits everywhere.
inline bool bit_identical(const kv::KVCache& a, const kv::KVCache& b) {
  if (!(a.shape() == b.shape())) return false;
  return std::memcmp(a.data().data(), b.data().data(), a.data().size() * sizeof(float)) == 0;
}

}  // namespace kvscope::test
