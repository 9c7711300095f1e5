// SPDX-License-Identifier: Apache-2.0
// Writes tests/codec/golden/*.kvc and expected.txt (codec file, size and the
// FNV-1a hash of the decoded values). Run it only when the format changes on
// purpose:  build/release/tests/codec/codec_make_golden tests/codec/golden
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "golden_cases.h"
#include "kvscope/common/paths.h"
#include "test_util.h"

int main(int argc, char** argv) {
  using namespace kvscope::codec;
  if (argc != 2) {
    std::cerr << "usage: codec_make_golden OUT_DIR\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  const auto cache = test::golden_cache();
  std::ofstream expected(dir / "expected.txt");
  expected << "# file bytes fnv1a64-of-decoded-float32-values (written by make_golden.cpp)\n";
  for (const auto& g : test::golden_cases()) {
    std::vector<std::uint8_t> bytes;
    if (g.legacy) {  // kept as committed: only its expected line is rewritten
      const std::string s = kvscope::read_file(dir / g.file);
      bytes.assign(s.begin(), s.end());
    } else {
      bytes = encode(cache, g.config, {.threads = 1, .progress = {}}).bytes;
      kvscope::write_file_atomically(dir / g.file, bytes.data(), bytes.size());
    }
    const auto d = decode(bytes);
    expected << g.file << " " << bytes.size() << " " << std::hex << std::setw(16) << std::setfill('0')
             << test::hash_values(d.data()) << std::dec << "\n";
    std::cout << g.file << ": " << bytes.size() << " bytes" << (g.legacy ? " (legacy, kept)" : "") << "\n";
  }
  return 0;
}
