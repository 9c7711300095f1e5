// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kvscope/common/error.h"
#include "kvscope/stream/ladder.h"
#include "kvscope/stream/policy.h"

namespace kvscope::stream {
namespace {

std::filesystem::path temp_file(const std::string& name, const std::string& text) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope_ladder_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

TEST(Ladder, ShippedLaddersParse) {
  for (const auto& entry : std::filesystem::directory_iterator(ladder_dir())) {
    if (entry.path().extension() != ".json") continue;
    const Ladder l = load_ladder(entry.path());
    EXPECT_FALSE(l.levels.empty()) << entry.path();
  }
  EXPECT_TRUE(std::filesystem::exists(default_ladder_path()));
}

TEST(Ladder, ParsesParamsOfEveryJsonType) {
  const auto path = temp_file("l.json", R"({"name": "t", "levels": [
    {"name": "a", "codec": "cachegen", "params": {"key_bins": [32, 16], "chunk_tokens": 256, "x": true, "s": "q"}},
    {"codec": "int8"}]})");
  const Ladder l = load_ladder(path);
  ASSERT_EQ(l.levels.size(), 2u);
  EXPECT_EQ(l.levels[0].config.params.at("key_bins"), "32,16");
  EXPECT_EQ(l.levels[0].config.params.at("chunk_tokens"), "256");
  EXPECT_EQ(l.levels[0].config.params.at("x"), "true");
  EXPECT_EQ(l.levels[1].name, "int8");
  EXPECT_EQ(l.find("a"), 0);
  EXPECT_EQ(l.find("1"), 1);
  EXPECT_EQ(l.find("zz"), -1);
  save_ladder(l, path.parent_path() / "l2.json");
  const Ladder back = load_ladder(path.parent_path() / "l2.json");
  EXPECT_EQ(config_key(back.levels[0].config), config_key(l.levels[0].config));
}

TEST(Ladder, MalformedLaddersNameTheFile) {
  for (const char* text : {"{", R"({"levels": []})", R"({"levels": [{"name": "x"}]})",
                           R"({"levels": [{"codec": "int8"}, {"codec": "int8"}]})"}) {
    const auto path = temp_file("bad.json", text);
    try {
      load_ladder(path);
      FAIL() << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format);
      EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
    }
  }
}

// The text form the GUI embeds in workspaces round-trips every field, and
// bad text is an error naming its source.
TEST(Ladder, JsonTextRoundTrips) {
  Ladder l;
  l.name = "edited";
  l.description = "two rungs";
  l.levels = {{"fine", {"cachegen", {{"key_bins", "32,16,8"}, {"delta", "auto"}}}}, {"coarse", {"int4", {}}}};
  const Ladder back = parse_ladder(ladder_to_json(l), "workspace.kvscope");
  EXPECT_EQ(back.name, "edited");
  EXPECT_EQ(back.description, "two rungs");
  ASSERT_EQ(back.levels.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back.levels[i].name, l.levels[i].name);
    EXPECT_EQ(back.levels[i].config.codec, l.levels[i].config.codec);
    EXPECT_EQ(back.levels[i].config.params, l.levels[i].config.params);
  }
  EXPECT_EQ(parse_ladder(R"({"levels": [{"codec": "int8"}]})", "x", "fallback").name, "fallback");
  try {
    parse_ladder(R"({"levels": [{"codec": 3}]})", "workspace.kvscope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
    EXPECT_NE(std::string(e.what()).find("workspace.kvscope"), std::string::npos) << e.what();
  }
}

TEST(Policy, ParsesSpecs) {
  Ladder ladder;
  ladder.levels = {{"fine", {"int8", {}}}, {"coarse", {"int4", {}}}};
  EXPECT_EQ(parse_policy("adaptive", ladder).levels.size(), 2u);
  EXPECT_EQ(parse_policy("fp16", ladder).levels.at(0).config.codec, "fp16");
  EXPECT_EQ(parse_policy("int8", ladder).kind, Policy::Kind::Fixed);
  EXPECT_EQ(parse_policy("text", ladder).kind, Policy::Kind::Text);
  EXPECT_EQ(parse_policy("fixed:coarse", ladder).levels.at(0).config.codec, "int4");
  EXPECT_EQ(parse_policy("fixed:0", ladder).levels.at(0).name, "fine");
  EXPECT_THROW(parse_policy("fixed:nope", ladder), Error);
  EXPECT_THROW(parse_policy("greedy", ladder), Error);
}

TEST(ThroughputEstimator, HarmonicMeanOfLastWindow) {
  ThroughputEstimator e(50, 2);
  EXPECT_DOUBLE_EQ(e.estimate_mbps(), 50);
  e.add(1e6, 1.0);  // 8 Mbit/s
  EXPECT_DOUBLE_EQ(e.estimate_mbps(), 8);
  e.add(1e6, 0.5);  // 16
  EXPECT_NEAR(e.estimate_mbps(), 2.0 / (1.0 / 8 + 1.0 / 16), 1e-12);
  e.add(1e6, 0.25);  // 32; the 8 drops out of the window
  EXPECT_NEAR(e.estimate_mbps(), 2.0 / (1.0 / 16 + 1.0 / 32), 1e-12);
  e.add(0, 1);  // ignored
  e.add(1, 0);  // ignored
  EXPECT_NEAR(e.estimate_mbps(), 2.0 / (1.0 / 16 + 1.0 / 32), 1e-12);
}

// Three levels of 100/50/25 kB per chunk, 4 chunks, 8 Mbit/s = 1 MB/s.
DecisionInput input(double slo, double now = 0) {
  DecisionInput in;
  in.chunk = 0;
  in.chunks = 4;
  in.now_s = now;
  in.slo_s = slo;
  in.estimated_mbps = 8;
  in.bytes = [](int level, int) { return 100e3 / double(1 << level); };
  in.decode_seconds = [](int, int) { return 0.01; };
  in.text_bytes = [](int) { return 4e3; };
  return in;
}

TEST(Policy, AdaptivePicksFinestLevelThatMeetsSlo) {
  Policy p;
  p.kind = Policy::Kind::Adaptive;
  p.levels = {{"l0", {"a", {}}}, {"l1", {"b", {}}}, {"l2", {"c", {}}}};
  // Remaining bytes 400k/200k/100k -> 0.4/0.2/0.1 s + 0.01 decode.
  EXPECT_EQ(decide(p, input(0.5)).level, 0);
  EXPECT_EQ(decide(p, input(0.3)).level, 1);
  EXPECT_EQ(decide(p, input(0.15)).level, 2);
  EXPECT_NEAR(decide(p, input(0.15)).predicted_finish_s, 0.11, 1e-9);
  // Nothing fits: text (paper behaviour, no recompute estimate).
  EXPECT_EQ(decide(p, input(0.05)).level, kTextLevel);
  // With a recompute estimate that makes text slower than the coarsest level.
  auto slow = input(0.05);
  slow.recompute_seconds = [](int) { return 5.0; };
  EXPECT_EQ(decide(p, slow).level, 2);
  auto fast = input(0.05);
  fast.recompute_seconds = [](int) { return 0.001; };
  EXPECT_EQ(decide(p, fast).level, kTextLevel);
  // Later in the run less time remains.
  auto late = input(0.5, 0.2);
  EXPECT_EQ(decide(p, late).level, 1);
}

// Regression (found on the default model, where CPU decode of a chunk is
// slower than its transfer at 100 Mbit/s): the prediction must account for a
// decode pipeline that cannot keep up, not just the last chunk's decode.
TEST(Policy, PredictionIncludesDecodeBacklog) {
  Policy p;
  p.kind = Policy::Kind::Adaptive;
  p.levels = {{"l0", {"a", {}}}};
  auto in = input(10);
  in.decode_seconds = [](int, int) { return 0.5; };  // slower than the 0.1 s transfer
  // Transfers end at 0.1 .. 0.4 s, but decodes queue: 0.1 + 4 * 0.5.
  EXPECT_NEAR(decide(p, in).predicted_finish_s, 2.1, 1e-9);
  in.receiver_free_s = 1.0;  // still decoding earlier chunks
  EXPECT_NEAR(decide(p, in).predicted_finish_s, 3.0, 1e-9);
}

TEST(Policy, FixedAndTextIgnoreTheEstimate) {
  Policy fixed;
  fixed.kind = Policy::Kind::Fixed;
  fixed.levels = {{"only", {"a", {}}}};
  EXPECT_EQ(decide(fixed, input(0.0001)).level, 0);
  Policy text;
  text.kind = Policy::Kind::Text;
  EXPECT_EQ(decide(text, input(100)).level, kTextLevel);
}

}  // namespace
}  // namespace kvscope::stream
