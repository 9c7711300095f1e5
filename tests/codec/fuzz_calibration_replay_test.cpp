// SPDX-License-Identifier: Apache-2.0
// Replays the calibration file fuzz target (fuzz_calibration.cpp) over
// deterministic mutations of valid files, so CI exercises it without
// libFuzzer: valid files parse; every bit flip and truncation is refused (the
// file and section CRCs cover every byte); mutations with the CRCs recomputed
// reach the section parsers and parse or fail with a named error, within the
// time and heap bounds.
#include <gtest/gtest.h>

#include <iostream>
#include <random>

#include "fuzz_replay.h"
#include "kvscope/common/crc32c.h"

namespace kvscope::test {
FuzzOutcome fuzz_calibration_run(std::span<const std::uint8_t> in);
std::vector<std::vector<std::uint8_t>> fuzz_calibration_seeds();
}  // namespace kvscope::test

namespace kvscope::test {
namespace {

ReplayBounds calibration_bounds() {
  ReplayBounds b;
  b.max_heap_bytes = 32u << 20;
  b.max_seconds = 2.0;
  return b;
}

// Recomputes the CRCs of a version 3 calibration file (docs/bitstream.md
// section 4), walking its sections leniently, so a tampered byte reaches the
// section parsers.
void reseal_calibration(std::vector<std::uint8_t>& b) {
  auto rd32 = [&](std::size_t o) {
    return std::uint32_t(b[o]) | std::uint32_t(b[o + 1]) << 8 | std::uint32_t(b[o + 2]) << 16 |
           std::uint32_t(b[o + 3]) << 24;
  };
  auto wr32 = [&](std::size_t o, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[o + i] = std::uint8_t(v >> (8 * i));
  };
  auto rd16 = [&](std::size_t o) { return std::uint32_t(b[o]) | std::uint32_t(b[o + 1]) << 8; };
  if (b.size() < 16 || 16 + std::uint64_t(rd32(8)) != b.size()) return;
  // body: str model_name, str model_sha256 (u16 length + bytes each), u16 S, sections.
  std::size_t p = 16;
  for (int i = 0; i < 2; ++i) {
    if (p + 2 > b.size()) return;
    p += 2 + rd16(p);
  }
  if (p + 2 > b.size()) return;
  const std::uint32_t sections = rd16(p);
  p += 2;
  for (std::uint32_t s = 0; s < sections; ++s) {
    if (p + 2 > b.size()) return;
    p += 2 + rd16(p);  // name
    if (p + 8 > b.size()) return;
    const std::uint32_t len = rd32(p);
    if (p + 8 + std::uint64_t(len) > b.size()) return;
    wr32(p + 4, crc32c({b.data() + p + 8, len}));
    p += 8 + len;
  }
  wr32(12, crc32c({b.data() + 16, b.size() - 16}));
}

TEST(FuzzCalibrationReplay, ValidFilesParseAndDamageIsRefused) {
  ReplayStats stats;
  const auto seeds = fuzz_calibration_seeds();
  ASSERT_EQ(seeds.size(), 2u);
  for (const auto& seed : seeds) {
    EXPECT_TRUE(replay_one(fuzz_calibration_run, seed, "seed", calibration_bounds(), stats).accepted);
    for (std::size_t bit = 0; bit < seed.size() * 8; bit += 1 + seed.size() / 40) {
      auto m = seed;
      m[bit / 8] ^= std::uint8_t(1u << (bit % 8));
      EXPECT_FALSE(replay_one(fuzz_calibration_run, m, "flip", calibration_bounds(), stats).accepted)
          << "bit " << bit;
    }
    for (std::size_t cut = 0; cut < seed.size(); cut += 1 + seed.size() / 30)
      EXPECT_FALSE(
          replay_one(fuzz_calibration_run, std::span(seed).first(cut), "cut", calibration_bounds(), stats)
              .accepted)
          << "cut " << cut;
  }
  std::cout << summary("calibration flips and truncations", stats) << "\n";
}

TEST(FuzzCalibrationReplay, ResealedTamperingParsesOrFailsWithANamedError) {
  ReplayStats stats;
  std::mt19937_64 rng(99);
  for (const auto& seed : fuzz_calibration_seeds())
    for (int i = 0; i < 300; ++i) {
      auto m = seed;
      for (int k = 0; k < 1 + int(rng() % 3); ++k) m[rng() % m.size()] ^= std::uint8_t(1u << (rng() % 8));
      reseal_calibration(m);
      replay_one(fuzz_calibration_run, m, "tampered", calibration_bounds(), stats);
    }
  EXPECT_EQ(stats.inputs, 600);
  EXPECT_GT(stats.refused, 0);
  // Resealed, most tampering gets past the CRCs to the section parsers: some
  // inputs still parse (a changed weight or frequency is valid data).
  EXPECT_GT(stats.accepted, 0);
  std::cout << summary("resealed calibration mutations", stats) << "\n";
}

}  // namespace
}  // namespace kvscope::test
