// SPDX-License-Identifier: Apache-2.0
// The committed golden bitstreams must keep decoding to the same values, and
// the encoder must keep producing them byte for byte (regenerate with
// codec_make_golden only for an intended format change).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "golden_cases.h"
#include "kvscope/common/paths.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

const std::filesystem::path kDir = std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/codec/golden";

std::map<std::string, std::pair<std::size_t, std::string>> expected() {
  std::map<std::string, std::pair<std::size_t, std::string>> m;
  std::ifstream in(kDir / "expected.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    std::string f, h;
    std::size_t n;
    ss >> f >> n >> h;
    m[f] = {n, h};
  }
  return m;
}

std::vector<std::uint8_t> load(const std::string& f) {
  const std::string s = read_file(kDir / f);
  return {s.begin(), s.end()};
}

std::string hex(std::uint64_t h) {
  std::ostringstream o;
  o << std::hex;
  o.width(16);
  o.fill('0');
  o << h;
  return o.str();
}

TEST(Golden, CommittedStreamsDecodeToTheExpectedValues) {
  const auto exp = expected();
  ASSERT_EQ(exp.size(), test::golden_cases().size());
  for (const auto& g : test::golden_cases()) {
    const auto bytes = load(g.file);
    ASSERT_EQ(bytes.size(), exp.at(g.file).first) << g.file;
    const auto d = decode(bytes);
    EXPECT_EQ(hex(test::hash_values(d.data())), exp.at(g.file).second) << g.file;
    EXPECT_EQ(d.info.model_name, "golden");
  }
}

TEST(Golden, EncoderReproducesTheCommittedBytes) {
  const auto cache = test::golden_cache();
  for (const auto& g : test::golden_cases()) {
    if (g.legacy) continue;
    const auto r = encode(cache, g.config, {.threads = 2, .progress = {}});
    EXPECT_TRUE(r.bytes == load(g.file)) << g.file << " changed: if intended, rerun codec_make_golden";
  }
}

// Guards the layout-version bump of cachegen (v2 added `scale`): a version 1
// stream must still decode with the per-channel steps it was written with.
TEST(Golden, CachegenVersion1StreamStillDecodes) {
  const auto info = inspect_stream(load("cachegen-v1.kvc"));
  EXPECT_EQ(info.codec_version, 1);
  EXPECT_EQ(info.params.count("scale"), 0u);
  EXPECT_EQ(inspect_stream(load("cachegen.kvc")).codec_version, 2);
  EXPECT_EQ(inspect_stream(load("cachegen.kvc")).params.at("scale"), "token");
}

}  // namespace
}  // namespace kvscope::codec
