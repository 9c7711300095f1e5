// SPDX-License-Identifier: Apache-2.0
// Time of compute_stats on a cache of the default model's shape (30 layers,
// 3 KV heads, head_dim 64) with 4096 tokens of synthetic data: the
// interactive-recompute budget the GUI needs.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>

#include "kvscope/kv/stats.h"

namespace {

kvscope::kv::KVCache make_cache(int tokens) {
  kvscope::kv::KVCache c(kvscope::kv::CacheShape{30, 3, tokens, 64});
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.f, 0.3f);
  auto data = c.data();
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::sin(float(i % 977) * 0.01f) + noise(rng);
  return c;
}

void BM_Stats(benchmark::State& state) {
  const auto cache = make_cache(int(state.range(0)));
  kvscope::kv::StatsConfig cfg;
  cfg.threads = int(state.range(1));
  cfg.channel_histograms = state.range(2) != 0;
  for (auto _ : state) benchmark::DoNotOptimize(kvscope::kv::compute_stats(cache, cfg));
}
BENCHMARK(BM_Stats)
    ->Args({4096, 0, 1})
    ->Args({4096, 0, 0})
    ->Args({4096, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
