// SPDX-License-Identifier: Apache-2.0
// Replays deterministic mutations (truncations, bit flips, overwritten
// runs) of a small valid file through the HDF5 fuzz target, so CI exercises
// it with gcc, and asserts each outcome: the valid file imports and decodes;
// a mutation is refused with a named error (or, resealed, may still import);
// no input takes more than the time and heap bounds. Two modes: as written
// (the whole-file checksum stops every mutation) and hostile (the checksum
// is recomputed, as an attacker would, so mutations reach HDF5 and KVScope's
// readers).
#include <gtest/gtest.h>

#include <iostream>
#include <random>

#include "fuzz_replay.h"
#include "hdf5_test_util.h"

namespace kvscope::test {
FuzzOutcome fuzz_hdf5_run(std::span<const std::uint8_t> data, bool hostile);
std::vector<std::uint8_t> fuzz_hdf5_seed();
}  // namespace kvscope::test

namespace kvscope {
namespace {

std::vector<std::vector<std::uint8_t>> mutations_of(const std::vector<std::uint8_t>& seed) {
  std::mt19937 rng(12345);
  std::vector<std::vector<std::uint8_t>> out;
  // Truncations, including inside the KVScope block and the superblock.
  for (std::size_t cut : {std::size_t(0), std::size_t(1), std::size_t(100), std::size_t(511),
                          std::size_t(512), std::size_t(520), std::size_t(600)})
    out.emplace_back(seed.begin(), seed.begin() + std::ptrdiff_t(std::min(cut, seed.size())));
  for (int i = 0; i < 60; ++i)
    out.emplace_back(seed.begin(), seed.begin() + std::ptrdiff_t(rng() % seed.size()));
  // Single bit flips anywhere (the user block included).
  for (int i = 0; i < 250; ++i) {
    auto m = seed;
    m[rng() % m.size()] ^= std::uint8_t(1u << (rng() % 8));
    out.push_back(std::move(m));
  }
  // Runs of random bytes, and appended garbage.
  for (int i = 0; i < 60; ++i) {
    auto m = seed;
    const std::size_t at = 512 + rng() % (m.size() - 512);
    for (std::size_t j = at; j < std::min(m.size(), at + 1 + rng() % 64); ++j) m[j] = std::uint8_t(rng());
    if (i % 5 == 0) m.push_back(std::uint8_t(rng()));
    out.push_back(std::move(m));
  }
  return out;
}

test::ReplayBounds hdf5_bounds() {
  test::ReplayBounds b;
  b.max_heap_bytes = 64u << 20;  // caps of the target: 2^22 values
  b.max_seconds = 5.0;           // a file that hangs HDF5 costs the child's 3 s limit
  return b;
}

TEST(Hdf5FuzzReplay, ValidFileImportsAndDecodes) {
  test::ReplayStats stats;
  const auto seed = test::fuzz_hdf5_seed();
  ASSERT_GT(seed.size(), 1024u);
  for (bool hostile : {false, true}) {
    const auto out = test::replay_one([&](auto in) { return test::fuzz_hdf5_run(in, hostile); }, seed, "seed",
                                      hdf5_bounds(), stats);
    EXPECT_TRUE(out.accepted) << out.message;
  }
}

TEST(Hdf5FuzzReplay, MutationsAsWrittenAreRefused) {
  test::ReplayStats stats;
  const auto seed = test::fuzz_hdf5_seed();
  // The user block's free text and padding after its key=value lines are
  // not covered by anything: a change there is harmless.
  const std::string text(seed.begin(), seed.begin() + 512);
  const std::size_t covered = text.find("\nThis block");
  ASSERT_NE(covered, std::string::npos);
  for (const auto& m : mutations_of(seed)) {
    const auto out = test::replay_one([](auto in) { return test::fuzz_hdf5_run(in, false); }, m, "mutation",
                                      hdf5_bounds(), stats);
    bool harmless = m.size() == seed.size();
    for (std::size_t i = 0; i < m.size() && harmless; ++i)
      harmless = m[i] == seed[i] || (i > covered && i < 512);
    if (!harmless) EXPECT_FALSE(out.accepted) << "a mutation passed the whole-file checksum";
  }
  EXPECT_EQ(stats.inputs, 377);
  std::cout << test::summary("HDF5 mutations, checksum kept", stats) << "\n";
}

TEST(Hdf5FuzzReplay, ResealedMutationsImportOrFailWithANamedError) {
  test::ReplayStats stats;
  const auto seed = test::fuzz_hdf5_seed();
  const std::size_t rss_before = test::peak_rss_bytes();
  for (const auto& m : mutations_of(seed))
    test::replay_one([](auto in) { return test::fuzz_hdf5_run(in, true); }, m, "resealed mutation",
                     hdf5_bounds(), stats);
  EXPECT_EQ(stats.inputs, 377);
  EXPECT_GT(stats.refused, 50);
  // HDF5's own allocations (malloc) are not in the heap count: bound the
  // process's peak resident size instead.
  EXPECT_LE(test::peak_rss_bytes() - rss_before, std::size_t(256) << 20);
  std::cout << test::summary("HDF5 mutations, checksum recomputed", stats) << "\n";
}

// A bit flip anywhere past the user block is caught by the whole-file CRC
// before HDF5 reads the file (the guard docs/hdf5-format.md describes).
TEST(Hdf5FuzzReplay, EveryFlipPastTheBlockIsAChecksumError) {
  test::TempDir dir("flip");
  const auto seed = test::fuzz_hdf5_seed();
  std::mt19937 rng(99);
  for (int i = 0; i < 60; ++i) {
    auto m = seed;
    m[512 + rng() % (m.size() - 512)] ^= std::uint8_t(1u << (rng() % 8));
    test::write_all(dir / "m.h5", m);
    try {
      io::import_hdf5(dir / "m.h5");
      ADD_FAILURE() << "flip " << i << " not detected";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Checksum) << e.what();
    }
  }
}

}  // namespace
}  // namespace kvscope
