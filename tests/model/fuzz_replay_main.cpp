// SPDX-License-Identifier: Apache-2.0
// Replays a model-file fuzz target (GGUF or safetensors) on deterministic
// mutations (bit flips, byte overwrites, large integers, truncations) of its
// seed inputs, so CI exercises the parser with gcc, and asserts each
// outcome: the seeds parse; a mutation parses or is refused with a named
// error; no input takes more than the time and heap bounds.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "fuzz_replay.h"

kvscope::test::FuzzOutcome kvscope_fuzz_run(std::span<const std::uint8_t> in);
std::vector<std::vector<std::uint8_t>> kvscope_fuzz_seeds();

TEST(FuzzReplay, MutationsOfValidInputsParseOrFailWithANamedError) {
  using namespace kvscope::test;
  std::mt19937 rng(12345);
  ReplayBounds bounds;
  bounds.max_heap_bytes = 64u << 20;  // the targets convert tensors of at most 2^20 values
  bounds.max_seconds = 2.0;
  ReplayStats stats;
  for (const auto& seed : kvscope_fuzz_seeds()) {
    ASSERT_FALSE(seed.empty());
    EXPECT_TRUE(replay_one(kvscope_fuzz_run, seed, "seed", bounds, stats).accepted);
    for (int i = 0; i < 320; ++i) {
      auto m = seed;
      const std::size_t pos = rng() % m.size();
      switch (i % 4) {
        case 0:
          m[pos] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
          break;
        case 1:
          m[pos] = static_cast<std::uint8_t>(rng());
          break;
        case 2: {  // a large little-endian integer where a length may be
          const std::uint64_t big = (i % 8 == 2) ? ~0ull : (1ull << (32 + rng() % 31));
          std::memcpy(m.data() + pos, &big, std::min<std::size_t>(8, m.size() - pos));
          break;
        }
        default:
          m.resize(pos);
          break;
      }
      replay_one(kvscope_fuzz_run, m, "mutation " + std::to_string(i), bounds, stats);
    }
    for (std::size_t cut = 0; cut < seed.size(); cut += std::max<std::size_t>(1, seed.size() / 64)) {
      const auto out = replay_one(kvscope_fuzz_run, std::span(seed).first(cut), "truncation", bounds, stats);
      EXPECT_FALSE(out.accepted && cut < 8) << "a " << cut << "-byte prefix parsed";
    }
  }
  EXPECT_GT(stats.inputs, 300);
  EXPECT_GT(stats.refused, 0);
  std::cout << summary("model file mutations", stats) << "\n";
}
