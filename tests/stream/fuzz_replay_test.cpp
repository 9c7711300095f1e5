// SPDX-License-Identifier: Apache-2.0
// Replays deterministic mutations (bit flips, truncations, byte overwrites)
// of valid profile files and frame headers through the fuzz target, so CI
// exercises it with gcc (tests/stream/fuzz_stream_inputs.cpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvscope/stream/manifest.h"
#include "stream_fixture.h"
#include "wire.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::uint8_t> with_mode(int mode, const std::string& text) {
  std::vector<std::uint8_t> v{static_cast<std::uint8_t>(mode)};
  v.insert(v.end(), text.begin(), text.end());
  return v;
}

void replay_mutations(const std::vector<std::uint8_t>& seed, int count) {
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  LLVMFuzzerTestOneInput(seed.data(), seed.size());
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
    LLVMFuzzerTestOneInput(m.data(), m.size());
  }
}

TEST(StreamFuzzReplay, ProfileCsvMutations) {
  replay_mutations(with_mode(0, "# trace\ntime_s,mbps\n0,10.5\n0.5,3\n1.25,0\n2,40\n"), 300);
}

TEST(StreamFuzzReplay, ProfileJsonMutations) {
  replay_mutations(with_mode(1, R"({"kind": "steps", "points": [[0, 100], [1, 15], [3, 40]]})"), 200);
  replay_mutations(
      with_mode(1, R"({"kind": "per_chunk_random", "min_mbps": 100, "max_mbps": 10000, "seed": 1})"), 100);
  replay_mutations(with_mode(1, R"({"kind": "constant", "mbps": 20})"), 100);
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
  replay_mutations(seed, 300);
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
