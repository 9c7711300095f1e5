// SPDX-License-Identifier: Apache-2.0
#pragma once

// Seed inputs for the bounded libFuzzer runs (ctest label `fuzz`): a target's
// LLVMFuzzerInitialize writes its valid example inputs into the folder named
// by $KVSCOPE_FUZZ_SEED_DIR (the run's corpus), so a 60-second run starts
// from inputs that reach the deep parts of the parser instead of from nothing.

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace kvscope::test {

inline void write_fuzz_seeds(const std::vector<std::vector<std::uint8_t>>& seeds) {
  const char* dir = std::getenv("KVSCOPE_FUZZ_SEED_DIR");
  if (dir == nullptr || *dir == '\0') return;
  std::filesystem::create_directories(dir);
  for (std::size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream out(std::filesystem::path(dir) / ("seed-" + std::to_string(i)), std::ios::binary);
    out.write(reinterpret_cast<const char*>(seeds[i].data()), std::streamsize(seeds[i].size()));
  }
}

}  // namespace kvscope::test
