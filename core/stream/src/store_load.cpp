// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/store_load.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "kvscope/common/error.h"

namespace kvscope::stream {

LoadTestReport run_load_test(const std::string& store_spec, const std::vector<Manifest>& contexts,
                             const LoadTestConfig& config) {
  require(config.receivers >= 1, ErrorCode::InvalidArgument, "load test needs at least one receiver");
  require(config.seconds > 0, ErrorCode::InvalidArgument, "load test needs a duration > 0 s");
  require(!contexts.empty(), ErrorCode::InvalidArgument, "load test needs at least one published context");
  using Clock = std::chrono::steady_clock;
  // Open every connection before the clock starts.
  std::vector<std::unique_ptr<ChunkStore>> stores;
  for (int r = 0; r < config.receivers; ++r) stores.push_back(open_store(store_spec, config.store_options));

  std::mutex mutex;
  LoadTestReport report;
  report.receivers = config.receivers;
  std::vector<double> latencies_ms;
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.seconds));
  auto receiver = [&](int r) {
    ChunkStore& store = *stores[static_cast<std::size_t>(r)];
    const Manifest& m = contexts[static_cast<std::size_t>(r) % contexts.size()];
    std::vector<double> mine;
    std::uint64_t chunks = 0, bytes = 0, corrupt = 0, missing = 0, network = 0;
    std::vector<std::string> errors;
    const double bytes_per_s = config.mbps_per_receiver * 1e6 / 8.0;
    for (int pass = 0; Clock::now() < deadline; ++pass) {
      for (int c = 0; c < static_cast<int>(m.chunks.size()) && Clock::now() < deadline; ++c) {
        const int level = (c + pass) % static_cast<int>(m.levels.size());
        const auto t0 = Clock::now();
        std::size_t got = 0;
        ReadPacer pace;
        if (bytes_per_s > 0)
          pace = [&](std::size_t n) {
            got += n;
            std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(double(got) / bytes_per_s)));
          };
        try {
          const auto v = fetch_chunk(store, m, c, level, pace);
          mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
          ++chunks;
          bytes += v.size();
        } catch (const Error& e) {
          if (e.code() == ErrorCode::Network)
            ++network;
          else if (e.code() == ErrorCode::Io)
            ++missing;
          else
            ++corrupt;
          if (errors.size() < 5) errors.push_back(e.what());
        }
      }
    }
    std::lock_guard lock(mutex);
    latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    report.chunks += chunks;
    report.bytes += bytes;
    report.corrupt += corrupt;
    report.missing += missing;
    report.network_errors += network;
    for (auto& e : errors)
      if (report.first_errors.size() < 5) report.first_errors.push_back(std::move(e));
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < config.receivers; ++r) threads.emplace_back(receiver, r);
  for (auto& t : threads) t.join();
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  report.megabytes_per_s = double(report.bytes) / report.seconds / 1e6;
  report.chunks_per_s = double(report.chunks) / report.seconds;
  if (!latencies_ms.empty()) {
    std::sort(latencies_ms.begin(), latencies_ms.end());
    auto at = [&](double q) {
      return latencies_ms[std::min(latencies_ms.size() - 1,
                                   static_cast<std::size_t>(q * double(latencies_ms.size())))];
    };
    report.fetch_p50_ms = at(0.50);
    report.fetch_p99_ms = at(0.99);
    report.fetch_max_ms = latencies_ms.back();
  }
  return report;
}

}  // namespace kvscope::stream
