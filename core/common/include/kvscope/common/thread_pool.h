// SPDX-License-Identifier: Apache-2.0
#pragma once

// The process's worker threads and parallel_for over them. Threads are
// started once, on first use, and reused by every later call: codec,
// statistics and streaming code call parallel_for per chunk or per layer,
// many times a second in the GUI, and starting threads for each call cost
// more than the work of small chunks.

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvscope {

/// Number of threads to use when the caller asks for `requested`
/// (0 = one per hardware thread). Always >= 1.
int resolve_threads(int requested);

/// A set of worker threads that run parallel_for loops. The calling thread
/// always works on its own loop too, so a loop makes progress even when
/// every worker is busy, and a body may itself call parallel_for (nested
/// loops never deadlock). Several threads may run loops at once; each loop
/// gets the workers that are free.
class ThreadPool {
 public:
  /// Starts no thread yet: workers start when a loop first needs them.
  ThreadPool() = default;
  /// Waits for the workers to finish their current loop and joins them.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Runs body(i) for every i in [0, count) on up to `threads` threads (the
  /// caller and threads - 1 workers; 0 = one per hardware thread), items
  /// handed out one at a time so uneven items balance. Blocks until all
  /// finish. If a body throws, items not yet started are skipped and the
  /// first exception is rethrown here. Starts workers as needed (at most
  /// 1023); if the system refuses a thread, the loop runs on fewer.
  void parallel_for(std::size_t count, int threads, const std::function<void(std::size_t)>& body);

  /// Worker threads started so far.
  std::size_t workers() const;

  /// The process-wide pool parallel_for() uses.
  static ThreadPool& shared();

 private:
  struct Loop;
  void ensure_workers(std::size_t n);
  void work();

  mutable std::mutex mutex_;
  std::condition_variable wake_;  ///< workers: a loop wants helpers, or stop
  std::vector<Loop*> loops_;      ///< loops that still want helpers
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

/// ThreadPool::shared().parallel_for(count, threads, body).
void parallel_for(std::size_t count, int threads, const std::function<void(std::size_t)>& body);

}  // namespace kvscope
