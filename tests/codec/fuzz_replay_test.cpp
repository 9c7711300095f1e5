// SPDX-License-Identifier: Apache-2.0
// Replays the decoder fuzz target (fuzz_decode.cpp) over deterministic
// mutations of valid streams of every codec, so CI exercises it without
// libFuzzer, and asserts each outcome: a valid stream decodes, every bit
// flip and truncation of one is refused (CRCs and lengths cover every byte),
// resealed tampering that reaches the codec decoders decodes or is refused
// with a named error; no input takes more than the time and heap bounds.
#include "fuzz_replay.h"

#include <gtest/gtest.h>

#include <iostream>

#include "test_util.h"

namespace kvscope::test {
FuzzOutcome fuzz_decode_run(std::span<const std::uint8_t> in);
std::vector<std::vector<std::uint8_t>> fuzz_decode_seeds();
}  // namespace kvscope::test

namespace kvscope::codec {
namespace {

// The target's cap is 2^22 values (16 MiB); tables, steps and scratch add a
// little. A bound a regression (an allocation before the cap check, a table
// blow-up) would cross.
::kvscope::test::ReplayBounds decode_bounds() {
  ::kvscope::test::ReplayBounds b;
  b.max_heap_bytes = 40u << 20;
  b.max_seconds = 2.0;
  return b;
}

TEST(FuzzReplay, ValidStreamsOfEveryCodecDecode) {
  ::kvscope::test::ReplayStats stats;
  for (const auto& seed : ::kvscope::test::fuzz_decode_seeds()) {
    const auto out =
        ::kvscope::test::replay_one(::kvscope::test::fuzz_decode_run, seed, "seed", decode_bounds(), stats);
    EXPECT_TRUE(out.accepted) << out.message;
  }
  EXPECT_GE(stats.inputs, 8);
  std::cout << ::kvscope::test::summary("valid streams", stats) << "\n";
}

TEST(FuzzReplay, EveryBitFlipAndTruncationIsRefused) {
  ::kvscope::test::ReplayStats stats;
  for (const auto& seed : ::kvscope::test::fuzz_decode_seeds()) {
    for (std::size_t bit = 0; bit < seed.size() * 8; bit += 1 + seed.size() / 50) {
      auto m = seed;
      m[bit / 8] ^= std::uint8_t(1u << (bit % 8));
      const auto out = ::kvscope::test::replay_one(
          ::kvscope::test::fuzz_decode_run, m, "flip of bit " + std::to_string(bit), decode_bounds(), stats);
      EXPECT_FALSE(out.accepted) << "bit " << bit << " flipped, still decodes";
    }
    for (std::size_t cut = 0; cut < seed.size(); cut += 1 + seed.size() / 40) {
      const auto out =
          ::kvscope::test::replay_one(::kvscope::test::fuzz_decode_run, std::span(seed).first(cut),
                                      "truncated to " + std::to_string(cut), decode_bounds(), stats);
      EXPECT_FALSE(out.accepted) << "truncated to " << cut << " bytes, still decodes";
      if (out.error) {
        EXPECT_TRUE(*out.error == ErrorCode::Format || *out.error == ErrorCode::Checksum) << out.message;
      }
    }
  }
  EXPECT_GE(stats.inputs, 500);
  std::cout << ::kvscope::test::summary("bit flips and truncations", stats) << "\n";
}

TEST(FuzzReplay, ResealedMutationsDecodeOrFailWithANamedError) {
  ::kvscope::test::ReplayStats stats;
  int i = 0;
  for (const auto& seed : ::kvscope::test::fuzz_decode_seeds())
    for (const auto& m : test::mutations(seed, 200, 1234 + i++))
      ::kvscope::test::replay_one(::kvscope::test::fuzz_decode_run, m, "mutation", decode_bounds(), stats);
  EXPECT_GE(stats.inputs, 1000);
  EXPECT_GT(stats.refused, stats.inputs / 4);
  std::cout << ::kvscope::test::summary("resealed mutations", stats) << "\n";
}

}  // namespace
}  // namespace kvscope::codec
