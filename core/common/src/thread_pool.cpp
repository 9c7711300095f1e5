// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <system_error>

namespace kvscope {

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

namespace {
constexpr std::size_t kMaxWorkers = 1023;
}  // namespace

// One parallel_for call. Lives on the caller's stack; the caller returns
// only after every helper that joined has left (active == 0).
struct ThreadPool::Loop {
  const std::function<void(std::size_t)>* body = nullptr;
  std::size_t count = 0;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr first_error;
  std::size_t wanted = 0;            ///< helpers still wanted (pool mutex)
  std::size_t active = 0;            ///< helpers working on it (pool mutex)
  std::condition_variable all_left;  ///< active dropped to 0 (pool mutex)

  void run() {
    for (;;) {
      const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count || failed.load(std::memory_order_relaxed)) return;
      try {
        (*body)(i);
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        failed = true;
      }
    }
  }
};

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

ThreadPool& ThreadPool::shared() {
  // Never destroyed: a loop may still run on some thread while the process
  // exits (e.g. a GUI job), and idle workers only wait on a condition.
  static ThreadPool* pool = new ThreadPool;
  return *pool;
}

std::size_t ThreadPool::workers() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

void ThreadPool::ensure_workers(std::size_t n) {
  std::lock_guard lock(mutex_);
  n = std::min(n, kMaxWorkers);
  while (threads_.size() < n) {
    try {
      threads_.emplace_back([this] { work(); });
    } catch (const std::system_error&) {
      break;  // the loop runs on the threads there are (the caller at least)
    }
  }
}

void ThreadPool::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !loops_.empty(); });
    if (stop_) return;
    Loop* loop = loops_.front();
    ++loop->active;
    if (--loop->wanted == 0) loops_.erase(loops_.begin());
    lock.unlock();
    loop->run();
    lock.lock();
    if (--loop->active == 0) loop->all_left.notify_all();
  }
}

void ThreadPool::parallel_for(std::size_t count, int threads, const std::function<void(std::size_t)>& body) {
  const std::size_t want = std::min<std::size_t>(count, static_cast<std::size_t>(resolve_threads(threads)));
  if (want <= 1) {
    for (std::size_t i = 0; i < count; ++i) body(i);
    return;
  }
  ensure_workers(want - 1);
  Loop loop;
  loop.body = &body;
  loop.count = count;
  loop.wanted = want - 1;
  {
    std::lock_guard lock(mutex_);
    loops_.push_back(&loop);
  }
  for (std::size_t i = 0; i + 1 < want; ++i) wake_.notify_one();
  loop.run();
  {
    std::unique_lock lock(mutex_);
    // No helper may join once the caller is done; wait for those that did.
    const auto it = std::find(loops_.begin(), loops_.end(), &loop);
    if (it != loops_.end()) loops_.erase(it);
    loop.all_left.wait(lock, [&] { return loop.active == 0; });
  }
  if (loop.first_error) std::rethrow_exception(loop.first_error);
}

void parallel_for(std::size_t count, int threads, const std::function<void(std::size_t)>& body) {
  ThreadPool::shared().parallel_for(count, threads, body);
}

}  // namespace kvscope
