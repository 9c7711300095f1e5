// SPDX-License-Identifier: Apache-2.0
#pragma once

// Bounds for fuzz replay tests: every input's outcome must be "accepted" or
// a named kvscope::Error of an expected kind, and no single input may use
// more than a heap and time budget. Heap use is counted by this library's
// replacement of the global operator new/delete (link kvscope_fuzz_replay),
// so the numbers are exact for C++ allocations; C libraries' malloc (HDF5,
// zstd) shows up in the process's peak resident size instead.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "fuzz_outcome.h"

namespace kvscope::test {

/// Bytes currently allocated through operator new, and the peak since the
/// last reset_heap_peak().
std::size_t heap_bytes();
std::size_t heap_peak_bytes();
void reset_heap_peak();
/// Peak resident set size of the process so far (getrusage), bytes.
std::size_t peak_rss_bytes();

struct ReplayBounds {
  std::size_t max_heap_bytes = 64u << 20;  ///< per input, peak over the call
  double max_seconds = 2.0;                ///< per input, wall clock (generous: CI machines are shared)
  /// Errors a refused input may carry (anything else fails the test).
  std::vector<ErrorCode> allowed = {ErrorCode::Format, ErrorCode::Checksum, ErrorCode::Unsupported,
                                    ErrorCode::Io};
};

/// What a replay saw, for the test's own assertions and the log.
struct ReplayStats {
  int inputs = 0, accepted = 0, refused = 0;
  std::size_t max_heap_bytes = 0;  ///< largest per-input peak
  double max_seconds = 0;          ///< slowest input
  std::string slowest, hungriest;  ///< labels of those inputs
};

using FuzzRun = std::function<FuzzOutcome(std::span<const std::uint8_t>)>;

/// Runs one input through `run` and checks the outcome and the bounds with
/// gtest assertions (naming `label`); updates `stats`; returns the outcome.
FuzzOutcome replay_one(const FuzzRun& run, std::span<const std::uint8_t> input, const std::string& label,
                       const ReplayBounds& bounds, ReplayStats& stats);

/// One line for the test log: inputs, accepted/refused, worst memory and time.
std::string summary(const std::string& what, const ReplayStats& stats);

}  // namespace kvscope::test
