// SPDX-License-Identifier: Apache-2.0
#include "transport.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <optional>
#include <thread>

namespace kvscope::stream::detail {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr auto kPollSlice = std::chrono::milliseconds(20);

/// Trace-time clock: wall seconds since the start times the time scale.
class TraceClock {
 public:
  TraceClock(SteadyClock::time_point start, double scale) : start_(start), scale_(scale) {}
  double now() const { return std::chrono::duration<double>(SteadyClock::now() - start_).count() * scale_; }
  SteadyClock::time_point wall_at(double t) const {
    return start_ +
           std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(t / scale_));
  }

 private:
  SteadyClock::time_point start_;
  double scale_;
};

/// Raised inside the fetch loop's pacer to end it; the session already holds
/// the failure (or the cancel).
struct Stop {};

struct Frame {
  int chunk = 0;
  int level = 0;
  std::vector<std::uint8_t> payload;
  double arrival = 0;
};

class DecodeQueue {
 public:
  void push(Frame f) {
    {
      std::lock_guard lock(mutex_);
      frames_.push_back(std::move(f));
    }
    cv_.notify_one();
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    cv_.notify_one();
  }
  /// Next frame, or nullopt once closed and drained, or cancelled. After a
  /// fetch failure the chunks that did arrive whole are still decoded.
  std::optional<Frame> pop(const Session& s) {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (s.cancelled()) return std::nullopt;
      if (!frames_.empty()) {
        Frame f = std::move(frames_.front());
        frames_.pop_front();
        return f;
      }
      if (closed_) return std::nullopt;
      cv_.wait_for(lock, kPollSlice);
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Frame> frames_;
  bool closed_ = false;
};

/// Fetches chunk i at policy level `level`, recording a failure as the
/// right status. Returns nullopt on failure (recorded) and rethrows Stop.
std::optional<std::vector<std::uint8_t>> fetch(Session& s, int chunk, int level, const ReadPacer& pace,
                                               FetchStats& stats) {
  try {
    return fetch_chunk(*s.source.store, s.manifest, chunk, s.manifest_level(level), pace, &stats);
  } catch (const Stop&) {
    throw;
  } catch (const Error& e) {
    const bool network = e.code() == ErrorCode::Network;
    s.fail(network ? StreamStatus::NetworkError : StreamStatus::StoreError, e.code(),
           "chunk " + std::to_string(chunk) + ": " + e.what(), chunk);
  } catch (const std::exception& e) {
    s.fail(StreamStatus::StoreError, ErrorCode::Internal, "chunk " + std::to_string(chunk) + ": " + e.what(),
           chunk);
  }
  return std::nullopt;
}

}  // namespace

void run_simulated(Session& s) {
  double now = 0;
  for (int i = 0; i < s.chunk_count(); ++i) {
    if (!s.poll("fetching chunk " + std::to_string(i + 1))) break;
    const int level = s.decide_chunk(i, now);
    s.fetch_started(i, now);
    std::vector<std::uint8_t> bytes;
    FetchStats stats;
    double end = now;
    if (level != kTextLevel) {
      auto got = fetch(s, i, level, {}, stats);
      if (!got) break;
      bytes = std::move(*got);
      end = s.profile.transfer_end(now, double(stats.wire_bytes), i);
    }
    s.fetched(i, now, end, stats);
    if (!s.receive(i, level, bytes, end)) break;
    now = end;
  }
  s.poll("done");
}

void run_real(Session& s) {
  const TraceClock clock(SteadyClock::now(), s.config.time_scale);
  DecodeQueue queue;
  std::thread decoder([&] {
    while (auto f = queue.pop(s)) {
      if (!s.receive(f->chunk, f->level, f->payload, f->arrival)) return;
      s.poll("decoded chunk " + std::to_string(f->chunk + 1));
    }
  });

  auto wait_until = [&](SteadyClock::time_point wall, int chunk) {
    for (;;) {
      if (!s.poll("fetching chunk " + std::to_string(chunk + 1)) || s.stopping()) throw Stop{};
      const auto now = SteadyClock::now();
      if (now >= wall) return;
      std::this_thread::sleep_for(std::min<SteadyClock::duration>(wall - now, kPollSlice));
    }
  };
  // The token bucket may hold up to 20 ms (wall) of credit, so a receiver
  // that woke late catches up instead of drifting behind the trace; a
  // chunk's fetch starts when the link became free for it (the previous
  // fetch's scheduled end, or now if that was longer ago than the bucket holds).
  const double credit = 0.020 * s.config.time_scale;
  double link_free = 0;
  try {
    for (int i = 0; i < s.chunk_count(); ++i) {
      if (!s.poll("fetching chunk " + std::to_string(i + 1)) || s.stopping()) break;
      const double t0 = std::max(link_free, clock.now() - credit);
      const int level = s.decide_chunk(i, t0);
      s.fetch_started(i, t0);
      FetchStats stats;
      if (level == kTextLevel) {
        s.fetched(i, t0, t0, stats);
        queue.push({i, level, {}, t0});
        link_free = t0;
        continue;
      }
      // Byte k of this fetch is released when the trace has delivered k
      // bytes since t0: what the simulated clock computes.
      std::size_t got = 0;
      const ReadPacer pace = [&](std::size_t n) {
        got += n;
        wait_until(clock.wall_at(s.profile.transfer_end(t0, double(got), i)), i);
      };
      auto bytes = fetch(s, i, level, pace, stats);
      if (!bytes) break;
      const double arrival = clock.now();
      link_free = s.profile.transfer_end(t0, double(stats.wire_bytes), i);
      s.fetched(i, t0, arrival, stats);
      queue.push({i, level, std::move(*bytes), arrival});
    }
  } catch (const Stop&) {
  }
  queue.close();
  decoder.join();
}

}  // namespace kvscope::stream::detail
