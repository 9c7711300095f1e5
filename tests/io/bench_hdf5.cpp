// SPDX-License-Identifier: Apache-2.0
// Export/import time and file size of the HDF5 container for a 2K-token cache
// of SmolLM2-135M's shape (30 layers, 3 kv heads, head_dim 64), per codec.
// Counters: file_bytes, bitstream_bytes, overhead_bytes (file - bitstream).
// Run: build/release/tests/io/bench_hdf5 --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/io/hdf5_container.h"
#include "kvscope/io/raw_cache.h"

namespace kvscope {
namespace {

// $KVSCOPE_BENCH_CACHE names a raw cache (.safetensors, e.g. from
// `kvscope-cli prefill --max-tokens 2048`); otherwise a synthetic one.
const kv::KVCache& cache_2k() {
  static const kv::KVCache cache = [] {
    if (const char* file = std::getenv("KVSCOPE_BENCH_CACHE"); file != nullptr && *file != '\0') {
      return io::load_cache(file);
    }
    kv::KVCache c = codec::synthetic_cache({30, 3, 2048, 64}, 1);
    for (int t = 0; t < 2048; ++t) c.info.token_ids.push_back(t), c.info.positions.push_back(t);
    return c;
  }();
  return cache;
}

std::filesystem::path scratch(const std::string& tag) {
  return std::filesystem::temp_directory_path() /
         ("kvscope-bench-" + tag + "-" + std::to_string(::getpid()) + ".h5");
}

io::Hdf5Contents contents_for(const codec::Codec& c) {
  io::Hdf5Contents contents;
  contents.shape = cache_2k().shape();
  contents.info = cache_2k().info;
  io::Hdf5Level level;
  level.config.codec = c.name();
  level.bitstream = codec::encode(cache_2k(), level.config).bytes;
  contents.levels.push_back(std::move(level));
  return contents;
}

void BM_Export(benchmark::State& state, const codec::Codec* c, bool reference) {
  auto contents = contents_for(*c);
  io::Hdf5ExportOptions options;
  options.overwrite = true;
  if (reference) {
    contents.reference = cache_2k();
    options.include_reference = true;
  }
  const auto path = scratch("export");
  io::Hdf5ExportResult r;
  for (auto _ : state) r = io::export_hdf5(path, contents, options);
  state.counters["file_bytes"] = double(r.file_bytes);
  state.counters["bitstream_bytes"] = double(r.bitstream_bytes);
  state.counters["overhead_bytes"] = double(r.file_bytes) - double(r.bitstream_bytes);
  std::filesystem::remove(path);
}

void BM_Import(benchmark::State& state, const codec::Codec* c, bool decode) {
  const auto path = scratch("import");
  io::Hdf5ExportOptions options;
  options.overwrite = true;
  io::export_hdf5(path, contents_for(*c), options);
  for (auto _ : state) {
    auto back = io::import_hdf5(path);
    if (decode) benchmark::DoNotOptimize(io::decode_hdf5_level(back).data().data());
    benchmark::DoNotOptimize(back.levels.data());
  }
  std::filesystem::remove(path);
}

void register_all() {
  for (const codec::Codec* c : codec::all_codecs()) {
    benchmark::RegisterBenchmark(("Hdf5Export/" + c->name()).c_str(), BM_Export, c, false)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("Hdf5Import/" + c->name()).c_str(), BM_Import, c, false)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("Hdf5ImportDecode/" + c->name()).c_str(), BM_Import, c, true)
        ->Unit(benchmark::kMillisecond);
  }
  const codec::Codec* first = codec::all_codecs().front();
  benchmark::RegisterBenchmark(("Hdf5ExportWithReference/" + first->name()).c_str(), BM_Export, first, true)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace
}  // namespace kvscope

// Registered from main, not at static initialisation: the codec registry is
// only guaranteed to be ready once main runs.
int main(int argc, char** argv) {
  kvscope::register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
