// SPDX-License-Identifier: Apache-2.0
// Heap accounting (replacement global operator new/delete) and the replay
// checks of fuzz_replay.h.
#include "fuzz_replay.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <sstream>

namespace {

std::atomic<std::size_t> g_current{0};
std::atomic<std::size_t> g_peak{0};

void* counted_alloc(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) return nullptr;
  const std::size_t now =
      g_current.fetch_add(malloc_usable_size(p), std::memory_order_relaxed) + malloc_usable_size(p);
  std::size_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  return p;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  g_current.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
  std::free(p);
}

}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n);
}
void operator delete(void* p) noexcept {
  counted_free(p);
}
void operator delete[](void* p) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}

namespace kvscope::test {

std::size_t heap_bytes() {
  return g_current.load(std::memory_order_relaxed);
}
std::size_t heap_peak_bytes() {
  return g_peak.load(std::memory_order_relaxed);
}
void reset_heap_peak() {
  g_peak.store(g_current.load(std::memory_order_relaxed), std::memory_order_relaxed);
}
std::size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return std::size_t(u.ru_maxrss) * 1024;
}

FuzzOutcome replay_one(const FuzzRun& run, std::span<const std::uint8_t> input, const std::string& label,
                       const ReplayBounds& bounds, ReplayStats& stats) {
  reset_heap_peak();
  const std::size_t before = heap_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  FuzzOutcome out = run(input);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::size_t used = heap_peak_bytes() - before;
  ++stats.inputs;
  (out.accepted ? stats.accepted : stats.refused)++;
  if (used > stats.max_heap_bytes) stats.max_heap_bytes = used, stats.hungriest = label;
  if (secs > stats.max_seconds) stats.max_seconds = secs, stats.slowest = label;
  EXPECT_LE(used, bounds.max_heap_bytes) << label << ": " << input.size() << "-byte input";
  EXPECT_LE(secs, bounds.max_seconds) << label << ": " << input.size() << "-byte input";
  if (!out.accepted) {
    bool allowed = false;
    for (ErrorCode c : bounds.allowed) allowed |= out.error == c;
    EXPECT_TRUE(allowed) << label << ": refused with error code " << to_string(*out.error) << ": "
                         << out.message;
    EXPECT_FALSE(out.message.empty()) << label << ": refused without a message";
  }
  return out;
}

std::string summary(const std::string& what, const ReplayStats& s) {
  std::ostringstream o;
  o << what << ": " << s.inputs << " inputs, " << s.accepted << " accepted, " << s.refused
    << " refused with a named error; largest heap peak " << (s.max_heap_bytes >> 10) << " KiB ("
    << s.hungriest << "), slowest " << s.max_seconds * 1000 << " ms (" << s.slowest << ")";
  return o.str();
}

}  // namespace kvscope::test
