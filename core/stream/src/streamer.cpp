#include "kvscope/stream/streamer.h"

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
  }
  return "?";
}

void prepare_stream(ChunkStore& store, const Policy& policy, const PrepareOptions& options) {
  std::vector<codec::CodecConfig> configs;
  for (const auto& level : policy.levels) configs.push_back(level.config);
  store.prepare(configs, options);
}

namespace {

void run_simulated(detail::Session& s) {
  double now = 0;
  std::vector<std::uint8_t> text;
  for (int i = 0; i < s.chunk_count(); ++i) {
    if (!s.poll("sending chunk " + std::to_string(i + 1))) break;
    const int level = s.decide_chunk(i, now);
    const auto bytes = s.payload(i, level, text);
    s.send_started(i, now);
    const double end = s.profile.transfer_end(now, double(bytes.size()) + detail::Session::kHeader, i);
    s.send_finished(i, end);
    s.arrived(i, end);
    if (!s.receive(i, level, bytes, end)) break;
    now = end;
  }
  s.poll("done");
}

}  // namespace

StreamReport run_stream(const ChunkStore& store, const BandwidthProfile& profile, const StreamConfig& config,
                        const StreamHooks& hooks) {
  detail::Session session(store, profile, config, hooks);
  if (config.simulate) {
    run_simulated(session);
  } else {
    detail::run_real(session);
  }
  if (session.cancelled()) throw Error(ErrorCode::Cancelled, "streaming cancelled");
  return session.finish(config.simulate ? "simulated" : "real");
}

nlohmann::json report_to_json(const StreamReport& r) {
  nlohmann::json j;
  j["mode"] = r.mode;
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
