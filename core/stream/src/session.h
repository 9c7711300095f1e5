// SPDX-License-Identifier: Apache-2.0
#pragma once

// State shared by the simulated and the real streaming drivers (internal):
// the policy's decisions, the per-chunk records, the receiver's decode
// pipeline, events and failure bookkeeping. Both drivers call the same code
// here, so they cannot disagree on anything but timing.

#include <atomic>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvscope/stream/streamer.h"

namespace kvscope::stream::detail {

class Session {
 public:
  Session(const StreamSource& source, const BandwidthProfile& trace, const StreamConfig& config,
          const StreamHooks& hooks);

  const StreamSource& source;
  const Manifest& manifest;
  const BandwidthProfile& profile;
  const StreamConfig& config;
  const StreamHooks& hooks;

  int chunk_count() const { return static_cast<int>(manifest.chunks.size()); }

  /// Decides chunk i's level at trace time `now`, fills its record and emits
  /// Decision. Returns the policy level (or kTextLevel).
  int decide_chunk(int chunk, double now);
  /// The manifest's level index of a policy level.
  int manifest_level(int level) const { return level_map_[static_cast<std::size_t>(level)]; }
  /// Records and emits SendStart (the fetch began at `t`).
  void fetch_started(int chunk, double t);
  /// Records the fetch's end (feeds the estimator), emits SendEnd and Arrival.
  void fetched(int chunk, double start, double arrival, const FetchStats& stats);
  /// Receiver side: decodes (or recomputes) chunk i, composes its decode
  /// times after `arrival`, keeps the part. Failures are recorded with
  /// fail(DecodeError); returns false then.
  bool receive(int chunk, int level, std::span<const std::uint8_t> payload, double arrival);

  /// Records the first failure (later ones are ignored) and emits Failed.
  void fail(StreamStatus status, ErrorCode code, const std::string& message, int chunk);
  bool failed() const { return failed_.load(); }
  /// Calls the progress hook (serialised); false -> cancelled.
  bool poll(std::string_view stage);
  bool cancelled() const { return cancelled_.load(); }
  bool stopping() const { return failed() || cancelled(); }

  /// Builds the report after the drivers are done (no threads left running).
  StreamReport finish(const std::string& mode);

 private:
  void emit(StreamEvent::Type type, int chunk, const std::string& message = {});  // caller holds mutex_
  void validate_part(const kv::KVCache& part, int chunk, const char* what) const;
  double payload_bytes(int level, int chunk) const;
  double estimated_decode_seconds(int level, int chunk) const;

  std::vector<int> level_map_;  // policy level -> manifest level
  std::vector<ChunkRecord> records_;
  ThroughputEstimator estimator_;
  double receiver_free_est_ = 0;  // the receiver's estimate of its decode pipeline (under mutex_)
  double query_budget_s_ = 0;     // estimated query prefill + first token
  bool text_possible_ = false;
  mutable std::mutex mutex_;  // records_, estimator_, failure fields, hooks
  std::atomic<bool> failed_{false}, cancelled_{false};
  StreamStatus status_ = StreamStatus::Ok;
  std::optional<ErrorCode> error_code_;
  std::string error_;
  int failed_chunk_ = -1;
  // Receiver pipeline (only the decoding thread touches these).
  std::vector<kv::KVCache> parts_;
  double last_decode_end_ = 0;
  int decoded_ = 0;  // under mutex_ (progress reads it)
};

}  // namespace kvscope::stream::detail
