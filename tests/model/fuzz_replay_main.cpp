// Replays a fuzz target on deterministic mutations (bit flips, byte
// overwrites, large integers, truncations) of its seed inputs, so CI
// exercises the parser with gcc and sanitizers-free builds too.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
std::vector<std::vector<std::uint8_t>> kvscope_fuzz_seeds();

TEST(FuzzReplay, MutationsOfValidInputsNeverCrash) {
  std::mt19937 rng(12345);
  int runs = 0;
  for (const auto& seed : kvscope_fuzz_seeds()) {
    ASSERT_FALSE(seed.empty());
    LLVMFuzzerTestOneInput(seed.data(), seed.size());
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
      LLVMFuzzerTestOneInput(m.data(), m.size());
      ++runs;
    }
    for (std::size_t cut = 0; cut < seed.size(); cut += std::max<std::size_t>(1, seed.size() / 64)) {
      LLVMFuzzerTestOneInput(seed.data(), cut);
      ++runs;
    }
  }
  EXPECT_GT(runs, 300);
}
