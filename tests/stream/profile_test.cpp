// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/profile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kvscope/common/error.h"

namespace kvscope::stream {
namespace {

std::filesystem::path temp_file(const std::string& name, const std::string& text) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope_stream_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path) << text;
  return path;
}

TEST(BandwidthProfile, ConstantIntegralAndInverse) {
  const auto p = BandwidthProfile::constant(80);  // 10 MB/s
  EXPECT_DOUBLE_EQ(p.mbps_at(123.0), 80);
  EXPECT_NEAR(p.bytes_between(1.0, 3.0), 20e6, 1e-3);
  EXPECT_NEAR(p.transfer_end(1.0, 5e6), 1.5, 1e-12);
  EXPECT_EQ(p.bytes_between(3.0, 1.0), 0.0);
}

TEST(BandwidthProfile, PiecewiseIntegralCrossesSegments) {
  // 8 Mbit/s (1 MB/s) for 2 s, then 0 for 1 s, then 16 Mbit/s (2 MB/s).
  const auto p = BandwidthProfile::piecewise({{0, 8}, {2, 0}, {3, 16}});
  EXPECT_DOUBLE_EQ(p.mbps_at(2.5), 0);
  EXPECT_DOUBLE_EQ(p.mbps_at(10), 16);
  EXPECT_NEAR(p.bytes_between(1, 4), 1e6 + 0 + 2e6, 1e-3);
  // 1.5 MB starting at 1 s: 1 MB by 2 s, nothing until 3 s, 0.5 MB more by 3.25 s.
  EXPECT_NEAR(p.transfer_end(1, 1.5e6), 3.25, 1e-9);
  for (double t0 : {0.0, 0.7, 2.2, 5.0})
    for (double b : {1.0, 1e5, 3e6})
      EXPECT_NEAR(p.bytes_between(t0, p.transfer_end(t0, b)), b, 1e-6 * b + 1e-6);
}

TEST(BandwidthProfile, PerChunkRandomIsSeededAndInRange) {
  const auto a = BandwidthProfile::per_chunk_random(100, 10000, 5);
  const auto b = BandwidthProfile::per_chunk_random(100, 10000, 5);
  const auto c = BandwidthProfile::per_chunk_random(100, 10000, 6);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a.mbps_at(0, i), b.mbps_at(7.0, i));  // time is ignored
    EXPECT_GE(a.mbps_at(0, i), 100);
    EXPECT_LE(a.mbps_at(0, i), 10000);
    differs |= a.mbps_at(0, i) != c.mbps_at(0, i);
  }
  EXPECT_TRUE(differs);
}

TEST(BandwidthProfile, RejectsInvalidConstruction) {
  EXPECT_THROW(BandwidthProfile::constant(0), Error);
  EXPECT_THROW(BandwidthProfile::piecewise({}), Error);
  EXPECT_THROW(BandwidthProfile::piecewise({{0, 5}, {0, 6}}), Error);
  EXPECT_THROW(BandwidthProfile::piecewise({{0, 5}, {1, 0}}), Error);  // last rate 0: never ends
  EXPECT_THROW(BandwidthProfile::per_chunk_random(10, 5, 1), Error);
}

TEST(BandwidthProfile, CsvLoadsWithHeaderAndComments) {
  const auto path = temp_file("ok.csv", "# a comment\ntime_s,mbps\n0,10\n\n1.5, 20\n");
  const auto p = load_profile(path);
  ASSERT_EQ(p.points().size(), 2u);
  EXPECT_DOUBLE_EQ(p.mbps_at(2), 20);
  EXPECT_EQ(p.name(), "ok");
}

// Bad CSV must name the file and the line (issue #7).
TEST(BandwidthProfile, BadCsvNamesFileAndLine) {
  const auto path = temp_file("bad.csv", "time_s,mbps\n0,10\n1,abc\n");
  try {
    load_profile(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
    EXPECT_NE(std::string(e.what()).find("bad.csv"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  const auto back = temp_file("back.csv", "0,10\n2,5\n1,7\n");
  try {
    load_profile(back);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_profile(temp_file("neg.csv", "0,-1\n")), Error);
  EXPECT_THROW(load_profile(temp_file("empty.csv", "# nothing\n")), Error);
  EXPECT_THROW(load_profile(temp_file("missing.csv", "").parent_path() / "does_not_exist.csv"), Error);
}

TEST(BandwidthProfile, SaveLoadRoundTrip) {
  auto trace = BandwidthProfile::piecewise({{0, 10.25}, {0.5, 3}, {2, 40}});
  const auto dir = temp_file("x", "").parent_path();
  save_profile(trace, dir / "rt.csv");
  save_profile(trace, dir / "rt.json");
  for (const char* name : {"rt.csv", "rt.json"}) {
    const auto back = load_profile(dir / name);
    ASSERT_EQ(back.points().size(), 3u) << name;
    EXPECT_DOUBLE_EQ(back.points()[0].mbps, 10.25);
    EXPECT_DOUBLE_EQ(back.points()[1].time_s, 0.5);
  }
  auto rnd = BandwidthProfile::per_chunk_random(100, 200, 9);
  EXPECT_THROW(save_profile(rnd, dir / "rnd.csv"), Error);
  save_profile(rnd, dir / "rnd.json");
  const auto back = load_profile(dir / "rnd.json");
  EXPECT_EQ(back.kind(), BandwidthProfile::Kind::PerChunkRandom);
  EXPECT_EQ(back.mbps_at(0, 3), rnd.mbps_at(0, 3));
}

TEST(BandwidthProfile, EveryShippedPresetLoads) {
  const auto names = preset_profile_names();
  for (const char* want : {"paper-random", "cellular", "datacenter", "constant-20mbps", "constant-100mbps"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  for (const auto& n : names) {
    const auto p = resolve_profile(n);
    EXPECT_GT(p.initial_mbps(), 0) << n;
  }
  EXPECT_DOUBLE_EQ(resolve_profile("constant-20mbps").mbps_at(5), 20);
  try {
    resolve_profile("no-such-profile");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cellular"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvscope::stream
