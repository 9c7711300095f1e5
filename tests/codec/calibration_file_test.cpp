// SPDX-License-Identifier: Apache-2.0
// Calibration files (docs/bitstream.md section 4): named, CRC-checked
// sections in one file hashed as a whole; version 1/2 files still load.
#include "kvscope/codec/calibration_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "kvscope/codec/calibration.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"

namespace kvscope::codec::calibration {
namespace {

CalibrationFile sample() {
  CalibrationFile f;
  f.model_name = "tiny";
  f.model_sha256 = "abc123";
  f.sections["transform.basis"] = {1, 0, 9, 8, 7};
  f.sections["cachegen.tables"] = {2, 0, 42};
  return f;
}

ErrorCode code_of(const std::vector<std::uint8_t>& bytes) {
  try {
    parse(bytes, "test.kvsprof");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test.kvsprof"), std::string::npos) << e.what();
    return e.code();
  }
  ADD_FAILURE() << "parsed";
  return ErrorCode::Internal;
}

void put32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = std::uint8_t(v >> (8 * i));
}

// Re-computes the body CRC so tampering reaches the section checks.
void reseal(std::vector<std::uint8_t>& b) {
  put32(b, 12, crc32c(std::span<const std::uint8_t>(b).subspan(16)));
}

TEST(CalibrationFile, RoundTripsAndIsDeterministic) {
  const auto bytes = serialize(sample());
  EXPECT_EQ(bytes, serialize(sample()));
  const auto back = parse(bytes, "x");
  EXPECT_EQ(back.model_name, "tiny");
  EXPECT_EQ(back.model_sha256, "abc123");
  EXPECT_EQ(back.sections, sample().sections);
  ASSERT_NE(back.find("transform.basis"), nullptr);
  EXPECT_EQ(back.find("missing"), nullptr);
  EXPECT_EQ(file_hash(bytes).size(), 16u);
}

TEST(CalibrationFile, Version2FileReadsAsTheCachegenSection) {
  const std::vector<std::uint8_t> body = {5, 6, 7};
  std::vector<std::uint8_t> v2 = {'K', 'V', 'S', 'P', 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0};
  put32(v2, 12, crc32c(body));
  v2.insert(v2.end(), body.begin(), body.end());
  const auto f = parse(v2, "old");
  ASSERT_EQ(f.sections.size(), 1u);
  const std::vector<std::uint8_t> expected = {2, 0, 5, 6, 7};
  EXPECT_EQ(*f.find(kLegacyCachegenSection), expected);
}

TEST(CalibrationFile, TamperingIsCaught) {
  const auto good = serialize(sample());
  auto bad = good;
  bad.back() ^= 1;  // last payload byte: body CRC first
  EXPECT_EQ(code_of(bad), ErrorCode::Checksum);
  reseal(bad);  // now the section's own CRC
  EXPECT_EQ(code_of(bad), ErrorCode::Checksum);
  bad = good;
  bad.pop_back();
  EXPECT_EQ(code_of(bad), ErrorCode::Format);
  bad = good;
  bad.push_back(0);
  EXPECT_EQ(code_of(bad), ErrorCode::Format);
  bad = good;
  bad[4] = 9;  // version
  EXPECT_EQ(code_of(bad), ErrorCode::Unsupported);
  bad = good;
  bad[0] = 'X';
  EXPECT_EQ(code_of(bad), ErrorCode::Format);
}

TEST(CalibrationFile, SectionNamesMustBeSortedAndClean) {
  // Swap the first letter of the first section name ('c' of cachegen) for
  // 'z': names are then out of order.
  auto bad = serialize(sample());
  const std::size_t name_at = 16 + 2 + 4 + 2 + 6 + 2 + 2;  // body: two strs, count, first name's length
  ASSERT_EQ(bad[name_at], 'c');
  bad[name_at] = 'z';
  reseal(bad);
  EXPECT_EQ(code_of(bad), ErrorCode::Format);
  bad[name_at] = 'C';  // not in [a-z0-9._-]
  reseal(bad);
  EXPECT_EQ(code_of(bad), ErrorCode::Format);
  CalibrationFile f;
  f.sections["Bad Name"] = {1};
  EXPECT_THROW(serialize(f), Error);
}

TEST(CalibrationFile, LoadByHashChecksPresenceAndContent) {
  const auto dir = std::filesystem::temp_directory_path() / ("kvscope-calib-" + std::to_string(::getpid()));
  const auto bytes = serialize(sample());
  const auto path = save(bytes, dir);
  EXPECT_EQ(path.filename().string(), file_hash(bytes) + kCalibrationExtension);
  EXPECT_EQ(load_by_hash(file_hash(bytes), dir).sections, sample().sections);
  try {
    load_by_hash("0123456789abcdef", dir);
    ADD_FAILURE() << "missing file loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find("0123456789abcdef"), std::string::npos);
  }
  // Same name, other content: the hash no longer matches.
  auto other = bytes;
  other[20] ^= 1;
  std::filesystem::remove(path);
  {
    std::FILE* fp = std::fopen(path.c_str(), "wb");
    ASSERT_NE(fp, nullptr);
    std::fwrite(other.data(), 1, other.size(), fp);
    std::fclose(fp);
  }
  try {
    load_by_hash(file_hash(bytes), dir);
    ADD_FAILURE() << "changed file loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Checksum);
  }
  std::filesystem::remove_all(dir);
}

TEST(CalibrationFile, CachegenCalibrationIsOneSectionOfAVersion3File) {
  const kv::KVCache cache = synthetic_cache({2, 1, 64, 8});
  const auto bytes = build_profile(std::span(&cache, 1), {});
  ASSERT_GE(bytes.size(), 6u);
  EXPECT_EQ(bytes[4], 3);
  const auto f = parse(bytes, "built");
  ASSERT_NE(f.find(kLegacyCachegenSection), nullptr);
  EXPECT_EQ((*f.find(kLegacyCachegenSection))[0], 3);  // cachegen table version (3: with the key space)
}

}  // namespace
}  // namespace kvscope::codec::calibration
