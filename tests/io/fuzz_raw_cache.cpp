// SPDX-License-Identifier: Apache-2.0
// Fuzz target for the raw-cache reader (io::load_cache: safetensors with
// layers.N.key/value tensors): arbitrary bytes must load into a cache of at
// most the cap (2^22 values here) or give a kvscope::Error naming the file;
// 64-bit dimensions are range-checked before they become int. Replayed by
// raw_cache_fuzz_replay_test.cpp; run under libFuzzer in the `fuzz` label.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/error.h"
#include "kvscope/io/raw_cache.h"

namespace kvscope::test {

inline constexpr std::size_t kFuzzRawMaxElements = std::size_t(1) << 22;

FuzzOutcome fuzz_raw_cache_run(std::span<const std::uint8_t> data) {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("kvscope-fuzz-raw-" + std::to_string(::getpid()) + ".safetensors");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  auto outcome = fuzz_outcome([&] {
    const kv::KVCache cache = io::load_cache(path, kFuzzRawMaxElements);
    const auto& s = cache.shape();
    if (s.elements() > kFuzzRawMaxElements || s.layers < 1 || s.kv_heads < 1 || s.head_dim < 1 ||
        s.tokens < 0)
      std::abort();  // the cap or a range check did not hold
    if (!cache.info.token_ids.empty() && cache.info.token_ids.size() != std::size_t(s.tokens)) std::abort();
  });
  std::error_code ec;
  std::filesystem::remove(path, ec);
  return outcome;
}

/// Raw caches as save_cache writes them (F16 and F32, with token ids).
std::vector<std::vector<std::uint8_t>> fuzz_raw_cache_seeds() {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope-fuzz-raw-seed-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::vector<std::vector<std::uint8_t>> seeds;
  for (auto dtype : {io::RawDtype::F16, io::RawDtype::F32}) {
    kv::KVCache cache = codec::synthetic_cache({2, 1, 6, 4}, 3);
    for (int t = 0; t < 6; ++t) cache.info.token_ids.push_back(100 + t), cache.info.positions.push_back(t);
    cache.info.model_name = "seed";
    io::save_cache(cache, dir / "seed.safetensors", dtype);
    std::ifstream in(dir / "seed.safetensors", std::ios::binary);
    seeds.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  std::filesystem::remove_all(dir);
  return seeds;
}

}  // namespace kvscope::test

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kvscope::test::write_fuzz_seeds(kvscope::test::fuzz_raw_cache_seeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvscope::test::fuzz_raw_cache_run({data, size});
  return 0;
}
