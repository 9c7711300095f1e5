// SPDX-License-Identifier: Apache-2.0
#pragma once

// Streams a context's KV cache chunk by chunk from a chunk store under a
// bandwidth trace and a TTFT SLO, on a simulated clock or for real, and
// reports when every chunk was fetched and decoded, and the time to first
// token with its parts (docs/streaming.md, "Delay model").
//
// The receiver drives: before fetching each chunk it picks the level (or
// text) with the policy, from its own throughput estimate, and fetches it
// from the store. In real mode the bytes come over the store's socket
// (Redis, a `kvscope-cli serve` sender process, or an in-process sender on
// 127.0.0.1) and the receiver's reads are paced by a token bucket that
// follows the bandwidth trace; decoding runs on its own thread, pipelined
// with the fetches.
//
// Typical use from a GUI worker thread (in-process sender):
//   auto context = std::make_shared<EncodedContext>(cache, 1024);
//   prepare_stream(*context, policy, {.progress = ...});           // encodes once
//   StreamHooks hooks;
//   hooks.on_event = [](const StreamEvent& e) { /* queue to the GUI */ };
//   hooks.progress = [&](double, std::string_view) { return !stop_flag; };
//   StreamReport r = run_stream(*context, trace, config, hooks);
// or from a store: publish() once, then run_stream(StreamSource{...}, ...).

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
#include "kvscope/stream/chunk_server.h"
#include "kvscope/stream/chunk_store.h"
#include "kvscope/stream/encoded_context.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/policy.h"
#include "kvscope/stream/profile.h"
#include "kvscope/stream/recompute.h"

namespace kvscope::stream {

/// Fault injection on the in-process sender's bytes (run_stream of an
/// EncodedContext in real mode), for tests of the error paths.
using TransportFault = ServerFault;

struct StreamConfig {
  Policy policy;
  /// Time to first token the run aims for: context loaded + the query's
  /// prefill + the first token. The policy plans the loading to end by
  /// slo_s minus the query's estimated cost (StreamHooks::query).
  double slo_s = 1.0;
  bool simulate = true;  ///< true: simulated clock, no sockets or sleeps
  /// Real mode: profile seconds per wall second (10 = a 60 s trace in 6 s).
  /// Transfers are sped up; decode and recompute run at their real speed.
  double time_scale = 1.0;
  /// The estimator's prior for the first chunk in Mbit/s; 0 = the profile's
  /// rate at t = 0 (or its first non-zero rate when it starts stalled).
  double prior_mbps = 0;
  int estimator_window = 3;  ///< chunks the harmonic-mean estimator averages
  int decode_threads = 0;    ///< codec threads for each decode (0 = all)
  /// Simulated mode: charge each chunk the decode time measured when it was
  /// encoded (the manifest's, per chunk and level) instead of timing this
  /// decode (deterministic timelines). Chunks are still decoded, to verify
  /// them and assemble the cache.
  bool model_decode_time = false;
  /// When > 0: the decode-time estimate the policy uses for every level
  /// (instead of the manifest's measurements), and in simulated mode also the
  /// decode time charged per token. Makes simulated runs independent of the
  /// machine (tests); real mode still measures each decode.
  double modelled_decode_seconds_per_token = 0;
  bool keep_assembled_cache = true;  ///< put the assembled cache in the report
  /// run_stream of an EncodedContext in real mode: seconds the receiver waits
  /// on its in-process sender without a byte (and retries a lost connection)
  /// before the run ends with a network error. Stores opened by the caller
  /// carry their own StoreOptions::retry_timeout_s.
  double idle_timeout_s = 10.0;
  TransportFault fault;
};

/// One chunk's journey. Times are trace seconds since the stream started
/// (-1 = did not happen).
struct ChunkRecord {
  int index = 0;
  int begin = 0, end = 0;         ///< tokens
  int level = kTextLevel;         ///< index into the policy's levels, kTextLevel = text
  std::string level_name;         ///< ladder level name or "text"
  std::string codec;              ///< codec name or "text"
  std::size_t payload_bytes = 0;  ///< the chunk's value (0 for text: the receiver has the tokens)
  std::size_t wire_bytes =
      0;             ///< bytes read for it: value plus protocol (simulated: as measured by the store)
  std::string key;   ///< store key fetched ("" for text)
  std::string node;  ///< store node that served it, when remote
  int attempts = 0;  ///< fetch attempts (redirections and retries included)
  double estimated_mbps = 0;      ///< estimate the policy used
  double predicted_finish_s = 0;  ///< the policy's prediction for when the context is loaded
  /// The prediction for each candidate level (Decision::level_finish_s).
  std::vector<double> level_finish_s;
  /// Fetch start: when the link became free for this chunk (real mode: the
  /// previous chunk's scheduled end, unless the receiver asked more than one
  /// token-bucket's worth, 20 ms wall, later). send_end_s = arrival_s: the
  /// last byte read (the receiver's reads are what the trace paces).
  double send_start_s = -1, send_end_s = -1;
  double arrival_s = -1;
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

/// NetworkError: the store or sender could not be reached in time.
/// StoreError: a chunk is missing (evicted, removed) or corrupt (CRC, length
/// or bitstream check failed) -- the message names the key. DecodeError: a
/// chunk passed the checks but could not be decoded or recomputed.
enum class StreamStatus { Ok, NetworkError, DecodeError, StoreError };
const char* to_string(StreamStatus status);

struct StreamReport {
  std::string mode;   ///< "simulated" or "real"
  std::string store;  ///< the store's describe()
  std::string policy;
  std::string profile;    ///< bandwidth trace name
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

  /// Time to first token = context_loaded_s + query_prefill_s + first_token_s.
  double ttft_s = 0;
  double context_loaded_s = 0;  ///< last chunk decoded (or recomputed)
  double query_prefill_s = 0;   ///< the query's tokens run over the loaded context
  double first_token_s = 0;     ///< one decode step: the first generated token
  int query_tokens = 0;
  /// How the query parts were timed: "measured (...)", "at recompute rate
  /// (...)", or "" when no query was given (both parts 0).
  std::string query_timing;
  bool slo_met = false;        ///< status Ok, every chunk loaded, ttft_s <= slo_s
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
  /// Error(InvalidArgument) before anything is fetched.
  std::optional<Recomputer> recompute;
  /// The query that follows the context (its cost is part of TTFT). Absent:
  /// TTFT is the context loading alone.
  std::optional<QueryCost> query;
  /// Quality of the assembled cache (e.g. kvscope::eval against the
  /// original); its JSON goes into the report. Optional.
  std::function<nlohmann::json(const kv::KVCache& assembled)> evaluate;
};

/// Encodes the chunks at every level the policy may use (a no-op for levels
/// already encoded).
void prepare_stream(EncodedContext& context, const Policy& policy, const PrepareOptions& options = {});

/// A context to load from a store.
struct StreamSource {
  ChunkStore* store = nullptr;  ///< used by the fetching thread only, for the run's duration
  Manifest manifest;            ///< load_manifest() of the context
  /// The context's token ids (text chunks are recomputed from them). May be
  /// empty when the policy never picks text and no recomputer is given.
  std::vector<std::int32_t> token_ids;
};

/// Streams a context from a store. Returns the report; a store that cannot
/// be reached, a missing or corrupt chunk, and a chunk that fails to decode
/// end the run cleanly with status != Ok, the error naming the chunk and key,
/// and the chunks so far. Throws Error(InvalidArgument) for a bad config
/// (slo <= 0, time_scale <= 0, a policy level the manifest lacks, text
/// without a recomputer or token ids), Error(Cancelled) when progress says
/// stop.
StreamReport run_stream(const StreamSource& source, const BandwidthProfile& trace, const StreamConfig& config,
                        const StreamHooks& hooks = {});

/// Publishes the policy's levels of `context` to an in-memory store and
/// streams from it: in real mode through a sender on its own thread over
/// TCP on 127.0.0.1 (config.fault damages its bytes), simulated directly.
/// Errors as above, plus Error(Network) when the loopback connection cannot
/// be set up.
StreamReport run_stream(const EncodedContext& context, const BandwidthProfile& trace,
                        const StreamConfig& config, const StreamHooks& hooks = {});

/// The report as JSON: ttft_seconds and its parts, slo_met, bytes_sent,
/// chunks[...] and the run's settings (CLI --json and GUI export).
nlohmann::json report_to_json(const StreamReport& report);

}  // namespace kvscope::stream
