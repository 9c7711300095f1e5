#include "kvscope/common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace kvscope {
namespace {

TEST(ParallelFor, VisitsEveryIndexOnce) {
  std::vector<std::atomic<int>> hits(1000);
  parallel_for(hits.size(), 4, [&](std::size_t i) { hits[i]++; });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ParallelFor, RethrowsFirstError) {
  EXPECT_THROW(parallel_for(100, 3, [](std::size_t i) { if (i == 42) throw std::runtime_error("x"); }),
               std::runtime_error);
}

TEST(ParallelFor, ZeroItemsIsFine) {
  parallel_for(0, 4, [](std::size_t) { FAIL(); });
}

TEST(ResolveThreads, AtLeastOne) {
  EXPECT_GE(resolve_threads(0), 1);
  EXPECT_EQ(resolve_threads(3), 3);
}

}  // namespace
}  // namespace kvscope
