// SPDX-License-Identifier: Apache-2.0
#include "kvscope/io/raw_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/safetensors.h"

namespace kvscope::io {
namespace {
namespace fs = std::filesystem;

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("kvscope-" + std::to_string(::getpid()) + "-" + name);
}

kv::KVCache random_cache(const kv::CacheShape& s) {
  kv::KVCache c(s);
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.f, 2.f);
  for (float& v : c.data()) v = d(rng);
  c.round_to_fp16();
  c.info.model_name = "test-model";
  c.info.rope_applied = false;
  for (int t = 0; t < s.tokens; ++t) {
    c.info.token_ids.push_back(t * 3);
    c.info.positions.push_back(t);
  }
  return c;
}

TEST(RawCache, Fp16RoundTripIsExactForFp16Values) {
  const auto c = random_cache({3, 2, 7, 8});
  const auto path = temp_file("cache.safetensors");
  save_cache(c, path);
  const auto back = load_cache(path);
  EXPECT_EQ(back.shape(), c.shape());
  EXPECT_EQ(kv::max_abs_difference(back, c), 0.f);
  EXPECT_EQ(back.info.token_ids, c.info.token_ids);
  EXPECT_EQ(back.info.positions, c.info.positions);
  EXPECT_EQ(back.info.model_name, "test-model");
  EXPECT_FALSE(back.info.rope_applied);
  fs::remove(path);
}

TEST(RawCache, RopeTablesAndLayerWindowsRoundTrip) {
  auto c = random_cache({3, 2, 7, 8});
  c.info.rope_inv_freq = {{1.0, 0.1, 0.01, 0.001}, {1.0, 0.1, 0.01, 0.001}, {0.5, 0.05, 0.005, 0.0005}};
  c.info.layer_window = {0, 4, 0};
  const auto path = temp_file("rope.safetensors");
  save_cache(c, path);
  const auto back = load_cache(path);
  fs::remove(path);
  EXPECT_EQ(back.info.rope_inv_freq, c.info.rope_inv_freq);
  EXPECT_EQ(back.info.layer_window, c.info.layer_window);
}

TEST(RawCache, TruncatedFileGivesFormatErrorNamingFile) {
  const auto c = random_cache({2, 1, 4, 4});
  const auto path = temp_file("trunc.safetensors");
  save_cache(c, path, RawDtype::F32);
  const auto full = read_file(path);
  for (std::size_t cut : {std::size_t(0), std::size_t(5), std::size_t(20), full.size() / 2, full.size() - 1}) {
    write_file_atomically(path, full.data(), cut);
    try {
      load_cache(path);
      FAIL() << "cut at " << cut << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format) << e.what();
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos);
    }
  }
  fs::remove(path);
}

TEST(Safetensors, RejectsOverlappingAndOutOfRangeTensors) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  std::vector<std::uint8_t> bytes(8);
  std::uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = std::uint8_t(len >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.resize(bytes.size() + 12);
  EXPECT_THROW(SafetensorsFile::from_bytes(bytes, "mem"), Error);
}

TEST(Safetensors, ShapeMustMatchByteCount) {
  std::vector<SafetensorsWriteTensor> t = {{"x", "F32", {3}, std::vector<std::uint8_t>(12)}};
  auto bytes = build_safetensors(t, {});
  EXPECT_NO_THROW(SafetensorsFile::from_bytes(bytes, "ok"));
  t[0].shape = {4};
  bytes = build_safetensors(t, {});
  EXPECT_THROW(SafetensorsFile::from_bytes(bytes, "bad"), Error);
}

TEST(RawCache, MissingLayersIsAFormatError) {
  const auto path = temp_file("nolayers.safetensors");
  std::vector<SafetensorsWriteTensor> t = {{"x", "F32", {1}, std::vector<std::uint8_t>(4)}};
  const auto bytes = build_safetensors(t, {});
  write_file_atomically(path, bytes.data(), bytes.size());
  EXPECT_THROW(load_cache(path), Error);
  fs::remove(path);
}

}  // namespace
}  // namespace kvscope::io
