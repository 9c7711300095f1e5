// SPDX-License-Identifier: Apache-2.0
// Replays the raw-cache fuzz target (fuzz_raw_cache.cpp) on mutations of
// valid files, asserting each outcome and the time and heap bounds, plus the
// hostile shapes a mutation rarely finds: dimensions beyond int, a zero
// dimension hiding a huge one, and a cache above the cap (refused naming
// both numbers before anything is allocated).
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <random>

#include "fuzz_replay.h"
#include "kvscope/io/safetensors.h"

namespace kvscope::test {
FuzzOutcome fuzz_raw_cache_run(std::span<const std::uint8_t> data);
std::vector<std::vector<std::uint8_t>> fuzz_raw_cache_seeds();
}  // namespace kvscope::test

namespace kvscope::test {
namespace {

ReplayBounds raw_bounds() {
  ReplayBounds b;
  b.max_heap_bytes = 48u << 20;  // 2^22 float32 values plus one tensor's conversion
  b.max_seconds = 2.0;
  return b;
}

TEST(RawCacheFuzzReplay, MutationsLoadOrFailWithANamedError) {
  std::mt19937 rng(7);
  ReplayStats stats;
  for (const auto& seed : fuzz_raw_cache_seeds()) {
    EXPECT_TRUE(replay_one(fuzz_raw_cache_run, seed, "seed", raw_bounds(), stats).accepted);
    for (int i = 0; i < 300; ++i) {
      auto m = seed;
      const std::size_t pos = rng() % m.size();
      if (i % 3 == 0)
        m[pos] ^= std::uint8_t(1u << (rng() % 8));
      else if (i % 3 == 1)
        m[pos] = std::uint8_t('0' + rng() % 10);  // digits of the JSON header
      else
        m.resize(pos);
      replay_one(fuzz_raw_cache_run, m, "mutation " + std::to_string(i), raw_bounds(), stats);
    }
  }
  EXPECT_GT(stats.refused, 100);
  std::cout << summary("raw cache mutations", stats) << "\n";
}

std::vector<std::uint8_t> file_with_shape(const std::string& shape_json, std::size_t data_bytes) {
  std::string header = R"({"layers.0.key":{"dtype":"F16","shape":)" + shape_json + R"(,"data_offsets":[0,)" +
                       std::to_string(data_bytes) + R"(]},"layers.0.value":{"dtype":"F16","shape":)" +
                       shape_json + R"(,"data_offsets":[)" + std::to_string(data_bytes) + "," +
                       std::to_string(2 * data_bytes) + "]}}";
  while (header.size() % 8) header.push_back(' ');
  std::vector<std::uint8_t> out(8);
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + 2 * data_bytes, 0);
  return out;
}

// Regression: load_cache narrowed 64-bit dimensions to int without a check
// (issue #18): [1, 0, 2^32 + 5] became head_dim 5.
TEST(RawCacheFuzzReplay, DimensionsBeyondIntAreRefused) {
  ReplayStats stats;
  for (const char* shape : {"[1,0,4294967301]", "[4294967297,0,1]", "[0,1,1]", "[1,1,0]", "[1,16777217,0]",
                            "[1048577,0,1]", "[1024,0,1025]"}) {
    const auto out = replay_one(fuzz_raw_cache_run, file_with_shape(shape, 0), shape, raw_bounds(), stats);
    EXPECT_FALSE(out.accepted) << shape;
    EXPECT_EQ(out.error, ErrorCode::Format) << shape << ": " << out.message;
  }
  // Within range, zero tokens: a valid empty cache.
  EXPECT_TRUE(
      replay_one(fuzz_raw_cache_run, file_with_shape("[2,0,8]", 0), "[2,0,8]", raw_bounds(), stats).accepted);
}

TEST(RawCacheFuzzReplay, ACacheAboveTheCapIsRefusedNamingBothNumbers) {
  ReplayStats stats;
  // 2 x 1 x 2049 x 1024 values: just over the target's 2^22 cap (8 MiB of data).
  const auto out = replay_one(fuzz_raw_cache_run, file_with_shape("[1,2049,1024]", 2049 * 1024 * 2),
                              "over the cap", raw_bounds(), stats);
  ASSERT_FALSE(out.accepted);
  EXPECT_EQ(out.error, ErrorCode::Unsupported);
  EXPECT_NE(out.message.find("4196352"), std::string::npos) << out.message;
  EXPECT_NE(out.message.find("4194304"), std::string::npos) << out.message;
}

std::vector<std::uint8_t> file_with_header(std::string header) {
  while (header.size() % 8) header.push_back(' ');
  std::vector<std::uint8_t> out(8);
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), header.begin(), header.end());
  return out;
}

// Regression (issue #18): a safetensors header is parsed into a JSON tree
// that costs ~20x its text (a 99 MB header of numbers took 2.2 GB); the
// parser now stops at 2^20 values or 8 levels of nesting.
TEST(RawCacheFuzzReplay, HugeOrDeepJsonHeadersAreRefusedWhileParsing) {
  ReplayBounds bounds;
  bounds.max_heap_bytes = 160u << 20;  // the 8 MB input's copy, and the values up to the limit
  bounds.max_seconds = 10.0;
  ReplayStats stats;
  std::string many = R"({"layers.0.key":{"dtype":"F16","data_offsets":[0,0],"shape":[)";
  for (int i = 0; i < (1 << 20) + 10; ++i) many += "1,";
  many += "0]}}";
  auto out = replay_one(fuzz_raw_cache_run, file_with_header(many), "2^20 values", bounds, stats);
  EXPECT_EQ(out.error, ErrorCode::Format) << out.message;
  EXPECT_NE(out.message.find("more than 1048576 JSON values"), std::string::npos) << out.message;
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  out = replay_one(fuzz_raw_cache_run, file_with_header(R"({"a":)" + deep + "}"), "depth 200", bounds, stats);
  EXPECT_EQ(out.error, ErrorCode::Format) << out.message;
  EXPECT_NE(out.message.find("nests deeper than 8"), std::string::npos) << out.message;
}

}  // namespace
}  // namespace kvscope::test
