// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace kvscope {
namespace {

TEST(ParallelFor, VisitsEveryIndexOnce) {
  std::vector<std::atomic<int>> hits(1000);
  parallel_for(hits.size(), 4, [&](std::size_t i) { hits[i]++; });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ParallelFor, RethrowsFirstError) {
  EXPECT_THROW(parallel_for(100, 3,
                            [](std::size_t i) {
                              if (i == 42) throw std::runtime_error("x");
                            }),
               std::runtime_error);
}

TEST(ParallelFor, ZeroItemsIsFine) {
  parallel_for(0, 4, [](std::size_t) { FAIL(); });
}

TEST(ResolveThreads, AtLeastOne) {
  EXPECT_GE(resolve_threads(0), 1);
  EXPECT_EQ(resolve_threads(3), 3);
}

// Issue #19: thread_pool started new threads on every call. The pool starts
// its workers once and every later loop reuses them.
TEST(ThreadPool, LaterLoopsReuseTheWorkers) {
  ThreadPool pool;
  EXPECT_EQ(pool.workers(), 0u);
  std::atomic<int> sum{0};
  pool.parallel_for(100, 4, [&](std::size_t) { ++sum; });
  EXPECT_EQ(pool.workers(), 3u);  // the caller is the fourth thread
  for (int call = 0; call < 50; ++call) pool.parallel_for(100, 4, [&](std::size_t) { ++sum; });
  EXPECT_EQ(pool.workers(), 3u);
  EXPECT_EQ(sum.load(), 5100);
  pool.parallel_for(100, 6, [&](std::size_t) { ++sum; });  // grows when asked for more
  EXPECT_EQ(pool.workers(), 5u);
}

// `threads` threads really run at once (even beyond the core count): every
// body waits until all have started. A pool that ran fewer would time out.
TEST(ThreadPool, RunsTheRequestedThreadsConcurrently) {
  ThreadPool pool;
  constexpr int kThreads = 6;
  std::mutex m;
  std::condition_variable cv;
  int started = 0;
  std::atomic<int> timed_out{0};
  pool.parallel_for(kThreads, kThreads, [&](std::size_t) {
    std::unique_lock lock(m);
    ++started;
    cv.notify_all();
    if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return started == kThreads; })) ++timed_out;
  });
  EXPECT_EQ(timed_out.load(), 0);
}

// A body may run its own parallel_for (a codec decoding chunks in parallel,
// each chunk's channels in parallel): nested loops finish, on any load.
TEST(ThreadPool, NestedLoopsFinish) {
  ThreadPool pool;
  std::vector<std::atomic<int>> hits(8 * 200);
  pool.parallel_for(8, 4, [&](std::size_t outer) {
    pool.parallel_for(200, 4, [&](std::size_t inner) { hits[outer * 200 + inner]++; });
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

// Several threads (GUI jobs, the streamer) run loops on the shared pool at once.
TEST(ThreadPool, ConcurrentCallersEachGetEveryItem) {
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 100; ++round) {
        std::vector<std::atomic<int>> hits(64);
        parallel_for(hits.size(), 3, [&](std::size_t i) { hits[i]++; });
        for (auto& h : hits)
          if (h.load() != 1) ++wrong;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// After an error the items not yet started are skipped, and the pool is
// still usable for the next loop.
TEST(ThreadPool, ErrorSkipsTheRestAndThePoolCarriesOn) {
  ThreadPool pool;
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.parallel_for(100000, 2,
                                 [&](std::size_t i) {
                                   ++ran;
                                   if (i == 0) throw std::runtime_error("first item");
                                 }),
               std::runtime_error);
  EXPECT_LT(ran.load(), 100000);
  std::atomic<int> after{0};
  pool.parallel_for(100, 2, [&](std::size_t) { ++after; });
  EXPECT_EQ(after.load(), 100);
}

}  // namespace
}  // namespace kvscope
