// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/streamer.h"

#include "kvscope/stream/chunk_server.h"
#include "session.h"
#include "transport.h"

namespace kvscope::stream {

const char* to_string(StreamEvent::Type type) {
  switch (type) {
    case StreamEvent::Type::Decision:
      return "decision";
    case StreamEvent::Type::SendStart:
      return "send_start";
    case StreamEvent::Type::SendEnd:
      return "send_end";
    case StreamEvent::Type::Arrival:
      return "arrival";
    case StreamEvent::Type::DecodeEnd:
      return "decode_end";
    case StreamEvent::Type::Failed:
      return "failed";
    case StreamEvent::Type::Finished:
      return "finished";
  }
  return "?";
}

const char* to_string(StreamStatus status) {
  switch (status) {
    case StreamStatus::Ok:
      return "ok";
    case StreamStatus::NetworkError:
      return "network_error";
    case StreamStatus::DecodeError:
      return "decode_error";
    case StreamStatus::StoreError:
      return "store_error";
  }
  return "?";
}

void prepare_stream(EncodedContext& context, const Policy& policy, const PrepareOptions& options) {
  std::vector<codec::CodecConfig> configs;
  for (const auto& level : policy.levels) configs.push_back(level.config);
  context.prepare(configs, options);
}

StreamReport run_stream(const StreamSource& source, const BandwidthProfile& trace, const StreamConfig& config,
                        const StreamHooks& hooks) {
  detail::Session session(source, trace, config, hooks);
  if (config.simulate) {
    detail::run_simulated(session);
  } else {
    detail::run_real(session);
  }
  if (session.cancelled()) throw Error(ErrorCode::Cancelled, "streaming cancelled");
  return session.finish(config.simulate ? "simulated" : "real");
}

StreamReport run_stream(const EncodedContext& context, const BandwidthProfile& trace,
                        const StreamConfig& config, const StreamHooks& hooks) {
  StoreOptions options;
  options.retry_timeout_s = config.idle_timeout_s;
  auto memory = std::shared_ptr<ChunkStore>(make_memory_store(options));
  StreamSource source;
  auto cache = context.shared_cache();
  source.token_ids = cache->info.token_ids;
  if (config.policy.kind == Policy::Kind::Text) {
    // Nothing to fetch; the manifest still describes the chunks.
    Manifest m;
    m.context = context_id(*cache);
    m.model_name = cache->info.model_name;
    m.shape = cache->shape();
    m.chunk_tokens = context.chunk_tokens();
    m.chunks = context.chunks();
    source.manifest = std::move(m);
  } else {
    source.manifest = publish(context, config.policy.levels, *memory).manifest;
  }
  if (config.simulate) {
    source.store = memory.get();
    return run_stream(source, trace, config, hooks);
  }
  ServerOptions server_options;
  server_options.fault = config.fault;
  ChunkServer server(memory, server_options);
  auto client = make_server_client("127.0.0.1", server.port(), options);
  source.store = client.get();
  return run_stream(source, trace, config, hooks);
}

nlohmann::json report_to_json(const StreamReport& r) {
  nlohmann::json j;
  j["mode"] = r.mode;
  j["store"] = r.store;
  j["policy"] = r.policy;
  j["profile"] = r.profile;
  j["estimator"] = r.estimator;
  j["prior_mbps"] = r.prior_mbps;
  j["recompute"] = r.recompute;
  j["slo_seconds"] = r.slo_s;
  j["time_scale"] = r.time_scale;
  j["chunk_tokens"] = r.chunk_tokens;
  j["tokens"] = r.tokens;
  j["status"] = to_string(r.status);
  if (r.error_code) {
    j["error_code"] = std::string(to_string(*r.error_code));
    j["error"] = r.error;
    j["failed_chunk"] = r.failed_chunk;
  }
  j["ttft_seconds"] = r.ttft_s;
  j["context_loaded_seconds"] = r.context_loaded_s;
  j["query_prefill_seconds"] = r.query_prefill_s;
  j["first_token_seconds"] = r.first_token_s;
  j["query_tokens"] = r.query_tokens;
  j["query_timing"] = r.query_timing;
  j["slo_met"] = r.slo_met;
  j["bytes_sent"] = r.bytes_sent;
  auto& chunks = j["chunks"] = nlohmann::json::array();
  for (const auto& c : r.chunks) {
    chunks.push_back({{"index", c.index},
                      {"begin", c.begin},
                      {"end", c.end},
                      {"level", c.level},
                      {"level_name", c.level_name},
                      {"codec", c.codec},
                      {"payload_bytes", c.payload_bytes},
                      {"wire_bytes", c.wire_bytes},
                      {"key", c.key},
                      {"node", c.node},
                      {"attempts", c.attempts},
                      {"estimated_mbps", c.estimated_mbps},
                      {"predicted_finish_s", c.predicted_finish_s},
                      {"level_finish_s", c.level_finish_s},
                      {"send_start_s", c.send_start_s},
                      {"send_end_s", c.send_end_s},
                      {"arrival_s", c.arrival_s},
                      {"decode_start_s", c.decode_start_s},
                      {"decode_end_s", c.decode_end_s},
                      {"decode_seconds", c.decode_seconds},
                      {"decoded", c.decoded}});
  }
  if (!r.quality.is_null()) j["quality"] = r.quality;
  return j;
}

}  // namespace kvscope::stream
