// SPDX-License-Identifier: Apache-2.0
// Cost of one parallel_for call on the shared pool, against starting and
// joining threads on each call (what parallel_for did before the pool,
// issue #19), for loops the size the codec runs per chunk: 64 items of
// about a microsecond of work each, and 1 to all hardware threads.
//   build/release/tests/common/bench_thread_pool
#include <benchmark/benchmark.h>

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "kvscope/common/thread_pool.h"

namespace {

// About a microsecond of arithmetic the compiler cannot drop.
double work(std::size_t i) {
  double x = double(i) + 1.0;
  for (int k = 0; k < 200; ++k) x = std::sqrt(x + 1.0);
  return x;
}

void BM_SharedPool(benchmark::State& state) {
  const int threads = int(state.range(0));
  std::vector<double> out(64);
  for (auto _ : state) {
    kvscope::parallel_for(out.size(), threads, [&](std::size_t i) { out[i] = work(i); });
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["loops_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

// The old parallel_for: threads started and joined on every call.
void BM_ThreadsPerCall(benchmark::State& state) {
  const std::size_t threads = std::size_t(state.range(0));
  std::vector<double> out(64);
  for (auto _ : state) {
    std::atomic<std::size_t> next{0};
    auto run = [&] {
      for (std::size_t i; (i = next.fetch_add(1)) < out.size();) out[i] = work(i);
    };
    std::vector<std::thread> pool;
    for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(run);
    run();
    for (auto& t : pool) t.join();
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["loops_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

void thread_args(benchmark::internal::Benchmark* b) {
  const int all = int(std::max(1u, std::thread::hardware_concurrency()));
  b->Arg(1)->Arg(2);
  if (all > 2) b->Arg(all);
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_SharedPool)->Apply(thread_args);
BENCHMARK(BM_ThreadsPerCall)->Apply(thread_args);

}  // namespace

BENCHMARK_MAIN();
