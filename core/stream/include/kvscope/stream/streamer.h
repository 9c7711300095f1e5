#pragma once

// Streams a context's KV cache chunk by chunk under a bandwidth profile and an
// SLO, on a simulated clock or over a real TCP connection on 127.0.0.1, and
// reports when every chunk was sent, arrived and was decoded.
//
// Typical use from a GUI worker thread:
//   auto store = std::make_shared<ChunkStore>(cache, 1024);
//   prepare_stream(*store, policy, {.progress = ...});          // encodes once
//   StreamHooks hooks;
//   hooks.on_event = [](const StreamEvent& e) { /* queue to the GUI */ };
//   hooks.progress = [&](double, std::string_view) { return !stop_flag; };
//   StreamReport r = run_stream(*store, profile, config, hooks);

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kvscope/common/error.h"
#include "kvscope/common/progress.h"
#include "kvscope/stream/chunk_store.h"
#include "kvscope/stream/policy.h"
#include "kvscope/stream/profile.h"
#include "kvscope/stream/recompute.h"

namespace kvscope::stream {

/// Fault injection on the real transport's wire bytes, for tests of the
/// error paths (offsets count every byte the sender writes, headers included).
struct TransportFault {
  std::int64_t corrupt_at = -1;  ///< flip the bits of the byte at this offset
  std::int64_t cut_after = -1;   ///< close the connection after this many bytes
};

struct StreamConfig {
  Policy policy;
  double slo_s = 1.0;    ///< time by which the whole context should be loaded
  bool simulate = true;  ///< true: simulated clock, no sockets or sleeps
  /// Real mode: profile seconds per wall second (10 = a 60 s trace in 6 s).
  /// Transfers are sped up; decode and recompute run at their real speed.
  double time_scale = 1.0;
  /// The estimator's prior for the first chunk in Mbit/s; 0 = the profile's
  /// rate at t = 0 (or its first non-zero rate when it starts stalled).
  double prior_mbps = 0;
  int estimator_window = 3;  ///< chunks the harmonic-mean estimator averages
  int decode_threads = 0;    ///< codec threads for each decode (0 = all)
  /// Simulated mode: take decode time from the per-token estimate prepare()
  /// measured instead of timing each decode (deterministic timelines). Chunks
  /// are still decoded, to verify them and assemble the cache.
  bool model_decode_time = false;
  /// When > 0: the decode-time estimate the policy uses for every level
  /// (instead of prepare()'s measurement), and in simulated mode also the
  /// decode time charged per token. Makes simulated runs independent of the
  /// machine (tests); real mode still measures each decode.
  double modelled_decode_seconds_per_token = 0;
  bool keep_assembled_cache = true;  ///< put the assembled cache in the report
  /// Real mode: wall seconds without progress on the connection before the
  /// run ends with a network error (no hang).
  double idle_timeout_s = 10.0;
  TransportFault fault;
};

/// One chunk's journey. Times are profile seconds since the stream started
/// (-1 = did not happen).
struct ChunkRecord {
  int index = 0;
  int begin = 0, end = 0;         ///< tokens
  int level = kTextLevel;         ///< index into the policy's levels, kTextLevel = text
  std::string level_name;         ///< ladder level name or "text"
  std::string codec;              ///< codec name or "text"
  std::size_t payload_bytes = 0;  ///< bitstream (or token ids) bytes
  std::size_t wire_bytes = 0;     ///< payload plus frame header
  double estimated_mbps = 0;      ///< estimate the policy used
  double predicted_finish_s = 0;  ///< the policy's prediction for the whole context
  /// The prediction for each candidate level (Decision::level_finish_s).
  std::vector<double> level_finish_s;
  /// Send start: when the link became free for this chunk (real mode: the
  /// previous chunk's scheduled end, unless the sender started more than one
  /// token-bucket's worth, 20 ms wall, later). Send end: last byte written.
  double send_start_s = -1, send_end_s = -1;
  double arrival_s = -1;  ///< last byte received
  /// The receiver's decode (or recompute) of this chunk: start = max(arrival,
  /// previous chunk's decode end) on the profile clock, end = start +
  /// measured (or modelled) duration.
  double decode_start_s = -1, decode_end_s = -1;
  double decode_seconds = 0;
  bool decoded = false;
};

struct StreamEvent {
  enum class Type { Decision, SendStart, SendEnd, Arrival, DecodeEnd, Failed, Finished };
  Type type;
  ChunkRecord chunk;    ///< snapshot after the event (Finished: last chunk)
  std::string message;  ///< Failed: the error
};
const char* to_string(StreamEvent::Type type);

enum class StreamStatus { Ok, NetworkError, DecodeError };
const char* to_string(StreamStatus status);

struct StreamReport {
  std::string mode;  ///< "simulated" or "real"
  std::string policy;
  std::string profile;    ///< profile name
  std::string estimator;  ///< description of the throughput estimator
  std::string recompute;  ///< recomputer description, or "" when none was supplied
  double slo_s = 0;
  double prior_mbps = 0;
  double time_scale = 1;
  int chunk_tokens = 0;
  int tokens = 0;

  StreamStatus status = StreamStatus::Ok;
  std::optional<ErrorCode> error_code;
  std::string error;  ///< what failed, naming the chunk
  int failed_chunk = -1;

  double ttft_s = 0;  ///< time until the whole context is loaded (last decode end)
  bool slo_met = false;
  std::size_t bytes_sent = 0;  ///< wire bytes of every chunk sent
  std::vector<ChunkRecord> chunks;
  /// The cache the receiver assembled (decoded and recomputed chunks), when
  /// status is Ok and keep_assembled_cache.
  std::shared_ptr<const kv::KVCache> assembled;
  /// The evaluator's result, when one was supplied and status is Ok.
  nlohmann::json quality;
};

struct StreamHooks {
  /// Called for every event, from the sender's and the receiver's threads
  /// (serialised: never two at once). Keep it short (queue to the GUI).
  std::function<void(const StreamEvent&)> on_event;
  /// Progress (fraction of chunks decoded); false stops the run, which then
  /// throws Error(Cancelled) within about 50 ms of wall time.
  ProgressFn progress;
  /// Needed when a chunk goes as text; without it a text decision is an
  /// Error(InvalidArgument) before anything is sent.
  std::optional<Recomputer> recompute;
  /// Quality of the assembled cache (e.g. kvscope::eval against the
  /// original); its JSON goes into the report. Optional.
  std::function<nlohmann::json(const kv::KVCache& assembled)> evaluate;
};

/// Encodes the chunks at every level the policy may use (a no-op for levels
/// already in the store).
void prepare_stream(ChunkStore& store, const Policy& policy, const PrepareOptions& options = {});

/// Streams the store's chunks. Returns the report; transport failures,
/// corrupted or cut connections and chunks that fail to decode end the run
/// cleanly with status != Ok, the error and the chunks so far. Throws
/// Error(InvalidArgument) for a bad config (slo <= 0, time_scale <= 0, a
/// level not prepared, text without a recomputer or token ids),
/// Error(Cancelled) when progress says stop, Error(Network) when the local
/// connection cannot even be set up.
StreamReport run_stream(const ChunkStore& store, const BandwidthProfile& profile, const StreamConfig& config,
                        const StreamHooks& hooks = {});

/// The report as JSON: ttft_seconds, slo_met, bytes_sent, chunks[...] and the
/// run's settings (CLI --json and GUI export).
nlohmann::json report_to_json(const StreamReport& report);

}  // namespace kvscope::stream
