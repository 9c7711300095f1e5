// Replays deterministic mutations (truncations, bit flips, overwritten
// runs) of a small valid file through the fuzz target, so CI exercises it
// with gcc. Any crash fails the test binary; every mutation must be refused
// with a kvscope::Error or import unchanged data.
#include <gtest/gtest.h>

#include <random>

#include "hdf5_test_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace kvscope {
namespace {

std::vector<std::uint8_t> small_valid_file() {
  test::TempDir dir("fuzzseed");
  const kv::KVCache cache = test::make_cache({1, 1, 8, 8});
  auto contents = test::contents_for(cache, codec::all_codecs().front()->name());
  contents.reference = cache;
  io::Hdf5ExportOptions options;
  options.include_reference = true;
  io::export_hdf5(dir / "seed.h5", contents, options);
  return test::read_all(dir / "seed.h5");
}

TEST(Hdf5FuzzReplay, MutationsNeverCrash) {
  const auto seed = small_valid_file();
  ASSERT_GT(seed.size(), 1024u);
  LLVMFuzzerTestOneInput(seed.data(), seed.size());
  std::mt19937 rng(12345);
  int runs = 0;
  // Truncations, including inside the KVScope block and the superblock.
  for (std::size_t cut : {std::size_t(0), std::size_t(1), std::size_t(100), std::size_t(511),
                          std::size_t(512), std::size_t(520), std::size_t(600)}) {
    LLVMFuzzerTestOneInput(seed.data(), std::min(cut, seed.size()));
    ++runs;
  }
  for (int i = 0; i < 100; ++i, ++runs) {
    const std::size_t cut = rng() % seed.size();
    LLVMFuzzerTestOneInput(seed.data(), cut);
  }
  // Single bit flips anywhere (the user block included).
  for (int i = 0; i < 250; ++i, ++runs) {
    auto m = seed;
    m[rng() % m.size()] ^= std::uint8_t(1u << (rng() % 8));
    LLVMFuzzerTestOneInput(m.data(), m.size());
  }
  // Runs of random bytes, and appended garbage.
  for (int i = 0; i < 50; ++i, ++runs) {
    auto m = seed;
    const std::size_t at = rng() % m.size();
    for (std::size_t j = at; j < std::min(m.size(), at + 1 + rng() % 64); ++j) m[j] = std::uint8_t(rng());
    if (i % 5 == 0) m.push_back(std::uint8_t(rng()));
    LLVMFuzzerTestOneInput(m.data(), m.size());
  }
  EXPECT_GE(runs, 400);
}

// A bit flip anywhere past the user block is caught by the whole-file CRC
// before HDF5 reads the file (the guard docs/hdf5-format.md describes).
TEST(Hdf5FuzzReplay, EveryFlipPastTheBlockIsAChecksumError) {
  test::TempDir dir("flip");
  const auto seed = small_valid_file();
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
