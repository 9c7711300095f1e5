// SPDX-License-Identifier: Apache-2.0
// Prefill throughput of the default model at 512 and 2048 tokens, and peak
// resident memory (counters: tokens_per_second, peak_rss_mb), with weights
// dequantized to float32 at load (BM_Prefill, what "auto" picks for it) and
// kept in the file's type (BM_PrefillFileWeights), and with the channel
// weights measured too (BM_PrefillChannelWeights: what the app's prefill asks
// for, so its calibration can weight cachegen's key channels).
//   build/release/tests/model/bench_prefill --benchmark_repetitions=1
// Larger models: kvscope-cli model bench (scripts/bench-models.sh).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include "kvscope/common/paths.h"
#include "kvscope/model/model.h"

namespace {

std::unique_ptr<kvscope::model::Model> load(const std::string& weights) {
  auto path = kvscope::find_default_model();
  kvscope::model::LoadOptions o;
  o.weights = weights;
  return path ? kvscope::model::Model::load(*path, o) : nullptr;
}

void prefill(benchmark::State& state, const kvscope::model::Model* m,
             const kvscope::model::PrefillOptions& options = {}) {
  if (!m) {
    state.SkipWithError("default model absent");
    return;
  }
  std::vector<std::int32_t> ids;
  // Real text tokens, repeated: deterministic and representative.
  const auto base = m->tokenizer().encode(
      "KV-cache compression lets a server stream the context of a long document to a GPU faster than "
      "recomputing it. CacheGen encodes keys and values with delta coding, layer-wise quantization and "
      "arithmetic coding, adapting the level to the bandwidth. ");
  while (static_cast<int>(ids.size()) < state.range(0)) ids.insert(ids.end(), base.begin(), base.end());
  ids.resize(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto r = m->prefill(ids, options);
    benchmark::DoNotOptimize(r.cache.data().data());
  }
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(state.range(0)) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  state.counters["peak_rss_mb"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
  state.counters["threads"] = m->threads();
}

// One float32 copy for both benchmarks that use it (peak RSS stays one model's).
const kvscope::model::Model* float32_model() {
  static const auto m = load("float32");
  return m.get();
}

void BM_Prefill(benchmark::State& state) {
  prefill(state, float32_model());
}

void BM_PrefillFileWeights(benchmark::State& state) {
  static const auto m = load("file");
  prefill(state, m.get());
}

void BM_PrefillChannelWeights(benchmark::State& state) {
  kvscope::model::PrefillOptions o;
  o.measure_channel_weights = true;
  prefill(state, float32_model(), o);
}

BENCHMARK(BM_PrefillFileWeights)
    ->Arg(2048)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->Iterations(1);
// 512 and 2048 tokens, one wall-clock run each (a prefill is seconds long).
void prefill_sizes(benchmark::internal::Benchmark* b) {
  b->Arg(512)
      ->Arg(2048)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Iterations(1);
}
BENCHMARK(BM_Prefill)->Apply(prefill_sizes);
BENCHMARK(BM_PrefillChannelWeights)->Apply(prefill_sizes);

}  // namespace

BENCHMARK_MAIN();
