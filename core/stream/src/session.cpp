// SPDX-License-Identifier: Apache-2.0
#include "session.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

namespace kvscope::stream::detail {
namespace {

double prior_of(const StreamConfig& config, const BandwidthProfile& profile) {
  if (config.prior_mbps > 0) return config.prior_mbps;
  if (profile.initial_mbps() > 0) return profile.initial_mbps();
  // A trace that starts stalled: the first rate it will reach.
  for (const auto& p : profile.points())
    if (p.mbps > 0) return p.mbps;
  return profile.max_mbps();
}

}  // namespace

Session::Session(const StreamSource& source_, const BandwidthProfile& profile_, const StreamConfig& config_,
                 const StreamHooks& hooks_)
    : source(source_),
      manifest(source_.manifest),
      profile(profile_),
      config(config_),
      hooks(hooks_),
      estimator_(prior_of(config_, profile_), config_.estimator_window) {
  require(source.store != nullptr, ErrorCode::InvalidArgument, "stream source has no store");
  require(std::isfinite(config.slo_s) && config.slo_s > 0, ErrorCode::InvalidArgument,
          "SLO must be > 0 seconds");
  require(std::isfinite(config.time_scale) && config.time_scale > 0, ErrorCode::InvalidArgument,
          "time scale must be > 0");
  require(config.idle_timeout_s > 0, ErrorCode::InvalidArgument, "idle timeout must be > 0 seconds");
  require(!manifest.chunks.empty(), ErrorCode::InvalidArgument, "the manifest has no chunks");
  const bool have_ids = static_cast<int>(source.token_ids.size()) == manifest.shape.tokens;
  text_possible_ = hooks.recompute.has_value() && hooks.recompute->recompute && have_ids;
  if (config.policy.kind == Policy::Kind::Text) {
    require(hooks.recompute && hooks.recompute->recompute, ErrorCode::InvalidArgument,
            "the text policy needs a recomputer (a model or a recompute rate)");
    require(have_ids, ErrorCode::InvalidArgument, "the text policy needs the context's token ids");
  } else {
    require(!config.policy.levels.empty(), ErrorCode::InvalidArgument,
            "policy '" + config.policy.name + "' has no levels");
    for (const auto& level : config.policy.levels) {
      const int m = manifest.find(level.config);
      if (m < 0) {
        std::string have;
        for (const auto& l : manifest.levels) have += (have.empty() ? "" : ", ") + l.name;
        throw Error(ErrorCode::InvalidArgument,
                    "level '" + level.name + "' (" + config_key(level.config) +
                        ") is not in the store for this context (published: " + have + ")");
      }
      level_map_.push_back(m);
    }
  }
  if (hooks.query) query_budget_s_ = std::max(0.0, hooks.query->prefill_s + hooks.query->first_token_s);
  for (const auto& r : manifest.chunks) {
    ChunkRecord rec;
    rec.index = r.index;
    rec.begin = r.begin;
    rec.end = r.end;
    records_.push_back(rec);
  }
}

double Session::payload_bytes(int level, int chunk) const {
  // Text costs no transfer: the receiver has the tokens (it hashed them to
  // find the context).
  if (level == kTextLevel) return 0.0;
  return double(manifest.levels[manifest_level(level)].bytes[chunk]);
}

double Session::estimated_decode_seconds(int level, int chunk) const {
  const ChunkRange& r = manifest.chunks[chunk];
  if (level == kTextLevel) {
    if (hooks.recompute && hooks.recompute->estimate_seconds)
      return hooks.recompute->estimate_seconds(r.tokens(), r.begin);
    return 0.0;
  }
  if (config.modelled_decode_seconds_per_token > 0)
    return config.modelled_decode_seconds_per_token * r.tokens();
  return manifest.levels[manifest_level(level)].decode_seconds[chunk];
}

int Session::decide_chunk(int chunk, double now) {
  DecisionInput in;
  in.chunk = chunk;
  in.chunks = chunk_count();
  in.now_s = now;
  // The context must be loaded early enough for the query to run in time.
  in.slo_s = config.slo_s - query_budget_s_;
  {
    std::lock_guard lock(mutex_);
    in.estimated_mbps = estimator_.estimate_mbps();
    in.receiver_free_s = receiver_free_est_;
  }
  in.bytes = [this](int level, int j) { return payload_bytes(level, j); };
  in.decode_seconds = [this](int level, int j) { return estimated_decode_seconds(level, j); };
  in.text_bytes = [](int) { return 0.0; };
  if (hooks.recompute && hooks.recompute->estimate_seconds)
    in.recompute_seconds = [this](int j) { return estimated_decode_seconds(kTextLevel, j); };
  Decision d = decide(config.policy, in);
  // Text is a candidate only when the receiver can recompute.
  if (d.level == kTextLevel && config.policy.kind == Policy::Kind::Adaptive && !text_possible_)
    d.level = static_cast<int>(config.policy.levels.size()) - 1;
  std::lock_guard lock(mutex_);
  ChunkRecord& rec = records_[chunk];
  rec.level = d.level;
  if (d.level == kTextLevel) {
    rec.level_name = rec.codec = "text";
  } else {
    rec.level_name = config.policy.levels[d.level].name;
    rec.codec = config.policy.levels[d.level].config.codec;
    rec.key = manifest.key(chunk, manifest_level(d.level));
  }
  rec.payload_bytes = static_cast<std::size_t>(payload_bytes(d.level, chunk));
  rec.estimated_mbps = d.estimated_mbps;
  rec.predicted_finish_s = d.predicted_finish_s;
  rec.level_finish_s = d.level_finish_s;
  emit(StreamEvent::Type::Decision, chunk);
  return d.level;
}

void Session::fetch_started(int chunk, double t) {
  std::lock_guard lock(mutex_);
  records_[chunk].send_start_s = t;
  emit(StreamEvent::Type::SendStart, chunk);
}

void Session::fetched(int chunk, double start, double arrival, const FetchStats& stats) {
  std::lock_guard lock(mutex_);
  ChunkRecord& rec = records_[chunk];
  rec.send_start_s = start;
  rec.send_end_s = rec.arrival_s = arrival;
  rec.wire_bytes = stats.wire_bytes;
  rec.node = stats.node;
  rec.attempts = stats.attempts;
  estimator_.add(double(rec.wire_bytes), arrival - start);
  receiver_free_est_ = std::max(arrival, receiver_free_est_) + estimated_decode_seconds(rec.level, chunk);
  emit(StreamEvent::Type::SendEnd, chunk);
  emit(StreamEvent::Type::Arrival, chunk);
}

void Session::validate_part(const kv::KVCache& part, int chunk, const char* what) const {
  const auto& want = manifest.shape;
  const auto& got = part.shape();
  const int tokens = manifest.chunks[chunk].tokens();
  if (got.layers != want.layers || got.kv_heads != want.kv_heads || got.head_dim != want.head_dim ||
      got.tokens != tokens)
    throw Error(ErrorCode::Format, std::string(what) + " gave a cache of shape " +
                                       std::to_string(got.layers) + "x" + std::to_string(got.kv_heads) + "x" +
                                       std::to_string(got.tokens) + "x" + std::to_string(got.head_dim) +
                                       ", expected " + std::to_string(want.layers) + "x" +
                                       std::to_string(want.kv_heads) + "x" + std::to_string(tokens) + "x" +
                                       std::to_string(want.head_dim));
}

bool Session::receive(int chunk, int level, std::span<const std::uint8_t> bytes, double arrival) {
  const ChunkRange& range = manifest.chunks[chunk];
  std::string what = "chunk " + std::to_string(chunk);
  try {
    kv::KVCache part;
    double seconds = 0;
    if (level == kTextLevel) {
      what += " (text recompute)";
      const std::span<const std::int32_t> ids(source.token_ids.data() + range.begin,
                                              static_cast<std::size_t>(range.tokens()));
      // Recompute over what this receiver holds: the decoded (lossy) prefix.
      kv::KVCache preceding;
      if (!parts_.empty()) preceding = kv::KVCache::concat_tokens(parts_);
      RecomputeRequest req{range, ids, &preceding};
      RecomputeResult res = hooks.recompute->recompute(req);
      validate_part(res.cache, chunk, "recompute");
      part = std::move(res.cache);
      seconds = res.seconds;
    } else {
      what += " (" + config.policy.levels[level].name + ")";
      codec::DecodeOptions opt;
      opt.threads = config.decode_threads;
      const auto t0 = std::chrono::steady_clock::now();
      part = codec::decode(bytes, opt);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      validate_part(part, chunk, "decode");
      if (config.simulate && (config.model_decode_time || config.modelled_decode_seconds_per_token > 0))
        seconds = estimated_decode_seconds(level, chunk);
    }
    const double start = std::max(arrival, last_decode_end_);
    last_decode_end_ = start + seconds;
    parts_.push_back(std::move(part));
    {
      std::lock_guard lock(mutex_);
      ++decoded_;
      ChunkRecord& rec = records_[chunk];
      rec.decode_start_s = start;
      rec.decode_end_s = last_decode_end_;
      rec.decode_seconds = seconds;
      rec.decoded = true;
      emit(StreamEvent::Type::DecodeEnd, chunk);
    }
    return true;
  } catch (const Error& e) {
    fail(StreamStatus::DecodeError, e.code(), what + ": " + e.what(), chunk);
  } catch (const std::exception& e) {
    fail(StreamStatus::DecodeError, ErrorCode::Internal, what + ": " + e.what(), chunk);
  }
  return false;
}

void Session::fail(StreamStatus status, ErrorCode code, const std::string& message, int chunk) {
  std::lock_guard lock(mutex_);
  if (failed_.load() || cancelled_.load()) return;
  status_ = status;
  error_code_ = code;
  error_ = message;
  failed_chunk_ = chunk;
  failed_.store(true);
  emit(StreamEvent::Type::Failed, std::max(0, std::min(chunk, chunk_count() - 1)), message);
}

bool Session::poll(std::string_view stage) {
  if (cancelled_.load()) return false;
  if (!hooks.progress) return true;
  std::lock_guard lock(mutex_);
  const double fraction = double(decoded_) / double(chunk_count());
  if (!hooks.progress(std::min(1.0, fraction), stage)) cancelled_.store(true);
  return !cancelled_.load();
}

void Session::emit(StreamEvent::Type type, int chunk, const std::string& message) {
  if (!hooks.on_event) return;
  StreamEvent e{type, records_[chunk], message};
  hooks.on_event(e);
}

StreamReport Session::finish(const std::string& mode) {
  StreamReport r;
  r.mode = mode;
  r.store = source.store->describe();
  r.policy = config.policy.name;
  r.profile = profile.name();
  r.estimator = "harmonic mean of the last " + std::to_string(std::max(1, config.estimator_window)) +
                " chunks' throughput (bytes / fetch time); first chunk: prior";
  r.recompute = hooks.recompute ? hooks.recompute->description : "";
  r.slo_s = config.slo_s;
  r.prior_mbps = prior_of(config, profile);
  r.time_scale = mode == "real" ? config.time_scale : 1.0;
  r.chunk_tokens = manifest.chunk_tokens;
  r.tokens = manifest.shape.tokens;
  std::lock_guard lock(mutex_);
  r.status = status_;
  r.error_code = error_code_;
  r.error = error_;
  r.failed_chunk = failed_chunk_;
  r.chunks = records_;
  for (const auto& c : records_) {
    if (c.arrival_s >= 0) r.bytes_sent += c.wire_bytes;
    r.context_loaded_s = std::max(r.context_loaded_s, c.decode_end_s);
  }
  const bool all = decoded_ == chunk_count();
  std::shared_ptr<kv::KVCache> assembled;
  if (status_ == StreamStatus::Ok && all) {
    assembled = std::make_shared<kv::KVCache>(kv::KVCache::concat_tokens(parts_));
    if (static_cast<int>(source.token_ids.size()) == manifest.shape.tokens)
      assembled->info.token_ids = source.token_ids;
    assembled->info.positions.resize(static_cast<std::size_t>(manifest.shape.tokens));
    std::iota(assembled->info.positions.begin(), assembled->info.positions.end(), 0);
    if (!manifest.model_name.empty()) assembled->info.model_name = manifest.model_name;
  }
  if (hooks.query) {
    r.query_tokens = hooks.query->tokens;
    r.query_prefill_s = hooks.query->prefill_s;
    r.first_token_s = hooks.query->first_token_s;
    r.query_timing = hooks.query->description;
    if (assembled && hooks.query->measure && hooks.query->tokens > 0) {
      const auto [prefill, first] = hooks.query->measure(*assembled);
      r.query_prefill_s = prefill;
      r.first_token_s = first;
      r.query_timing = "measured over the assembled cache";
    }
  }
  r.ttft_s = r.context_loaded_s + r.query_prefill_s + r.first_token_s;
  r.slo_met = status_ == StreamStatus::Ok && all && r.ttft_s <= config.slo_s;
  if (assembled) {
    if (hooks.evaluate) r.quality = hooks.evaluate(*assembled);
    if (config.keep_assembled_cache) r.assembled = std::move(assembled);
  }
  if (hooks.on_event && !records_.empty())
    hooks.on_event({StreamEvent::Type::Finished, records_.back(), error_});
  return r;
}

}  // namespace kvscope::stream::detail
