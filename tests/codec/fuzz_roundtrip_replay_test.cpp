// SPDX-License-Identifier: Apache-2.0
// Replays the round-trip fuzz target (fuzz_roundtrip.cpp) on a fixed set of
// pseudo-random inputs: every codec, shapes with and without SIMD-sized
// heads, zero-token caches, raw fp16 bit patterns, zero and constant caches,
// scales from 2^-20 to 2^8. The target aborts on a value outside its codec's
// bound; here every input must be accepted (encoded and checked) within the
// time and heap bounds.
#include <gtest/gtest.h>

#include <iostream>
#include <random>

#include "fuzz_replay.h"
#include "kvscope/codec/codec.h"

namespace kvscope::test {
FuzzOutcome fuzz_roundtrip_run(std::span<const std::uint8_t> in);
}  // namespace kvscope::test

namespace kvscope::test {
namespace {

TEST(FuzzRoundtripReplay, EveryCodecRoundTripsWithinItsBound) {
  std::mt19937_64 rng(2026);
  ReplayBounds bounds;
  bounds.max_heap_bytes = 16u << 20;
  bounds.max_seconds = 2.0;
  ReplayStats stats;
  const int codecs = int(codec::all_codecs().size());
  for (int i = 0; i < 60 * codecs; ++i) {
    std::vector<std::uint8_t> in(4096);
    for (auto& b : in) b = std::uint8_t(rng());
    // First 4 bytes pick the codec: walk them all in turn.
    const std::uint32_t pick = std::uint32_t(i % codecs);
    for (int k = 0; k < 4; ++k) in[std::size_t(k)] = std::uint8_t(pick >> (24 - 8 * k));
    const auto out = replay_one(fuzz_roundtrip_run, in, "input " + std::to_string(i), bounds, stats);
    EXPECT_TRUE(out.accepted) << out.message;
  }
  std::cout << summary("round trips", stats) << "\n";
}

}  // namespace
}  // namespace kvscope::test
