// SPDX-License-Identifier: Apache-2.0
#pragma once

// Many receivers loading contexts from one store at once: the store's
// throughput, the spread of its chunk fetch latency, and whether any chunk
// came back corrupt or went missing (docs/streaming.md, "Reliability").
// `kvscope-cli store bench` prints it; a short run is a test.

#include <cstdint>
#include <string>
#include <vector>

#include "kvscope/stream/chunk_store.h"
#include "kvscope/stream/manifest.h"

namespace kvscope::stream {

struct LoadTestConfig {
  int receivers = 16;
  double seconds = 60;
  /// Each receiver's reads paced at this rate (a token bucket); 0 = as fast
  /// as the store delivers.
  double mbps_per_receiver = 0;
  StoreOptions store_options;
};

struct LoadTestReport {
  int receivers = 0;
  double seconds = 0;          ///< wall time of the run
  std::uint64_t chunks = 0;    ///< chunks fetched and checked
  std::uint64_t bytes = 0;     ///< value bytes of those chunks
  double megabytes_per_s = 0;  ///< bytes / seconds / 1e6
  double chunks_per_s = 0;
  double fetch_p50_ms = 0, fetch_p99_ms = 0, fetch_max_ms = 0;
  std::uint64_t corrupt = 0;              ///< failed a length, CRC or bitstream check
  std::uint64_t missing = 0;              ///< not in the store
  std::uint64_t network_errors = 0;       ///< the store could not be reached in time
  std::vector<std::string> first_errors;  ///< up to 5 messages
};

/// Opens `store_spec` once per receiver (its own connection) and has each
/// stream context `r % contexts.size()` over and over for `seconds`: chunk
/// by chunk in order, cycling through the levels, every fetch checked with
/// fetch_chunk(). Error(InvalidArgument) when receivers < 1, seconds <= 0 or
/// no contexts; the store's errors when a receiver cannot open it.
LoadTestReport run_load_test(const std::string& store_spec, const std::vector<Manifest>& contexts,
                             const LoadTestConfig& config);

}  // namespace kvscope::stream
