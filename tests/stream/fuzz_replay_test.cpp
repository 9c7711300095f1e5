// SPDX-License-Identifier: Apache-2.0
// Replays deterministic mutations (bit flips, truncations, byte overwrites)
// of valid bandwidth trace files and frame headers through the fuzz target
// (tests/stream/fuzz_stream_inputs.cpp), so CI exercises it with gcc, and
// asserts each outcome: the seed loads; a mutation loads (and the target
// checks it is usable) or is refused with a named error; no input takes more
// than the time and heap bounds.
#include "fuzz_replay.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "kvscope/stream/manifest.h"
#include "stream_fixture.h"
#include "wire.h"

namespace kvscope::test {
FuzzOutcome fuzz_stream_run(std::span<const std::uint8_t> data);
}  // namespace kvscope::test

namespace {

std::vector<std::uint8_t> with_mode(int mode, const std::string& text) {
  std::vector<std::uint8_t> v{static_cast<std::uint8_t>(mode)};
  v.insert(v.end(), text.begin(), text.end());
  return v;
}

// Returns the stats so each test can assert how many inputs were refused.
kvscope::test::ReplayStats replay_mutations(const std::vector<std::uint8_t>& seed, int count) {
  using namespace kvscope::test;
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  ReplayBounds bounds;
  bounds.max_heap_bytes = 4u << 20;  // a trace of a few points
  bounds.max_seconds = 1.0;
  ReplayStats stats;
  EXPECT_TRUE(replay_one(fuzz_stream_run, seed, "seed", bounds, stats).accepted);
  for (int i = 0; i < count; ++i) {
    auto m = seed;
    switch (next() % 3) {
      case 0:  // bit flip (not of the mode byte)
        m[1 + next() % (m.size() - 1)] ^= static_cast<std::uint8_t>(1u << (next() % 8));
        break;
      case 1:  // truncation
        m.resize(1 + next() % (m.size() - 1));
        break;
      default:  // a random byte
        m[1 + next() % (m.size() - 1)] = static_cast<std::uint8_t>(next());
        break;
    }
    replay_one(fuzz_stream_run, m, "mutation " + std::to_string(i), bounds, stats);
  }
  std::cout << summary("stream input mutations", stats) << "\n";
  return stats;
}

TEST(StreamFuzzReplay, ProfileCsvMutations) {
  const auto stats =
      replay_mutations(with_mode(0, "# trace\ntime_s,mbps\n0,10.5\n0.5,3\n1.25,0\n2,40\n"), 300);
  EXPECT_EQ(stats.inputs, 301);
  EXPECT_GT(stats.refused, 30);   // a cut or a flipped digit is often a malformed trace
  EXPECT_GT(stats.accepted, 30);  // a changed digit is often still a valid trace
}

TEST(StreamFuzzReplay, ProfileJsonMutations) {
  int refused = 0, accepted = 0;
  for (const auto& [text, n] : std::vector<std::pair<std::string, int>>{
           {R"({"kind": "steps", "points": [[0, 100], [1, 15], [3, 40]]})", 200},
           {R"({"kind": "per_chunk_random", "min_mbps": 100, "max_mbps": 10000, "seed": 1})", 100},
           {R"({"kind": "constant", "mbps": 20})", 100}}) {
    const auto stats = replay_mutations(with_mode(1, text), n);
    EXPECT_EQ(stats.inputs, n + 1);
    refused += stats.refused;
    accepted += stats.accepted;
  }
  EXPECT_GT(refused, 100);  // most cuts and flips break the JSON or its schema
  EXPECT_GT(accepted, 3);   // the seeds and harmless changes (digits, spaces)
}

// Regression (found by the `fuzz` label's libFuzzer run): a "kind" that is
// not a string escaped as nlohmann::json::type_error, not a kvscope::Error.
TEST(StreamFuzzReplay, ANonStringKindIsAFormatError) {
  kvscope::test::ReplayStats stats;
  for (const char* text : {R"({"kind":0, "max_mbps": 10000, "sn_mbps": 100, "sued": 1})", R"({"kind":[1]})",
                           R"({"kind":null,"mbps":3})"}) {
    const auto out = kvscope::test::replay_one(kvscope::test::fuzz_stream_run, with_mode(1, text), text,
                                               kvscope::test::ReplayBounds{}, stats);
    EXPECT_FALSE(out.accepted) << text;
    EXPECT_EQ(out.error, kvscope::ErrorCode::Format) << text << ": " << out.message;
  }
}

TEST(StreamFuzzReplay, FrameHeaderMutations) {
  using namespace kvscope::stream::wire;
  Header h;
  h.type = FrameType::Value;
  h.payload_bytes = 123456;
  const auto bytes = encode_header(h);
  std::vector<std::uint8_t> seed{2};
  seed.insert(seed.end(), bytes.begin(), bytes.end());
  const auto back = decode_header(std::span(bytes));
  EXPECT_EQ(back.type, FrameType::Value);
  EXPECT_EQ(back.payload_bytes, 123456u);
  const auto stats = replay_mutations(seed, 300);
  EXPECT_EQ(stats.inputs, 301);
}

TEST(StreamFuzzReplay, ManifestMutations) {
  using namespace kvscope::stream;
  auto context = kvscope::stream::testing::prepared_store(3);
  const auto m = make_manifest(*context, kvscope::stream::testing::quantization_ladder().levels);
  const auto bytes = serialize_manifest(m);
  const auto back = parse_manifest(bytes, "seed");
  EXPECT_EQ(back.levels.size(), 3u);
  EXPECT_EQ(back.key(2, 1), m.key(2, 1));
  // Raw bytes (mostly stopped by the CRC) and JSON under a valid CRC.
  std::vector<std::uint8_t> raw{4};
  raw.insert(raw.end(), bytes.begin(), bytes.end());
  replay_mutations(raw, 200);
  std::vector<std::uint8_t> json{3};
  json.insert(json.end(), bytes.begin() + 12, bytes.end());
  replay_mutations(json, 600);
}

}  // namespace
