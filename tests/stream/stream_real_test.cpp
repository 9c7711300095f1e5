// SPDX-License-Identifier: Apache-2.0
// Real-mode tests: an in-process sender and the receiver over TCP on
// 127.0.0.1, the receiver's reads paced by the bandwidth trace.
//
// Timing tolerances (a loaded 2-core CI machine; sleeps wake late, never early):
// - pacing: each chunk's send duration is within 10% + 5 ms of wall time
//   (times the time scale) of what the profile's integral says;
// - sim vs real: the same levels for every chunk when no simulated decision
//   is within 20% (of the time left) of its SLO boundary; send ends within
//   15% + 10 ms of wall time of the simulated ones.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <set>

#include "kvscope/common/error.h"
#include "stream_fixture.h"

namespace kvscope::stream {
namespace {

using testing::config_for;
using testing::prepared_store;

double wall_seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Per chunk: fetch duration within 10% + 30 ms (wall) of the trace's (the
// receiver's request and a decode thread share a loaded 2-core machine).
// Whole run: the last byte arrives within 5% + 15 ms (wall) of when the
// trace says the link could have carried everything fetched.
void expect_paced(const StreamReport& r, const BandwidthProfile& profile, double scale) {
  double ideal = 0;
  for (const auto& c : r.chunks) {
    const double want = profile.transfer_end(c.send_start_s, double(c.wire_bytes), c.index) - c.send_start_s;
    const double got = c.send_end_s - c.send_start_s;
    EXPECT_NEAR(got, want, 0.10 * want + 0.030 * scale) << "chunk " << c.index;
    EXPECT_GE(c.arrival_s, c.send_start_s);
    EXPECT_LT(c.arrival_s - c.send_end_s, 0.015 * scale) << "chunk " << c.index;
    ideal = profile.transfer_end(ideal, double(c.wire_bytes), c.index);
  }
  const double last = r.chunks.back().send_end_s;
  EXPECT_NEAR(last, ideal, 0.05 * ideal + 0.015 * scale);
}

TEST(StreamReal, DeliversBytesIntactAndDecodes) {
  auto store = prepared_store();
  auto cfg = config_for("int8", 5, false);
  const auto r = run_stream(*store, BandwidthProfile::constant(200), cfg);
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(r.mode, "real");
  // Every chunk passed the bitstream's CRCs on decode, and the assembled
  // cache equals decoding the stored bitstreams locally.
  ASSERT_TRUE(r.assembled);
  std::vector<kv::KVCache> local;
  for (const auto& c : r.chunks) local.push_back(codec::decode(store->get(c.index, {"int8", {}}).bytes));
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, kv::KVCache::concat_tokens(local)), 0.0f);
  for (const auto& c : r.chunks) EXPECT_TRUE(c.decoded);
}

TEST(StreamReal, PacedRateFollowsConstantProfile) {
  auto store = prepared_store();
  const auto profile = BandwidthProfile::constant(16);  // 2 MB/s: ~1 MB in ~0.5 s
  const auto r = run_stream(*store, profile, config_for("fp16", 5, false));
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  expect_paced(r, profile, 1.0);
  const double total = r.chunks.back().send_end_s;
  EXPECT_NEAR(total, double(r.bytes_sent) / 2e6, 0.05 * total + 0.015);
}

TEST(StreamReal, PacedRateFollowsShippedTraceWithTimeScale) {
  auto store = prepared_store();
  const auto profile = resolve_profile("cellular");  // 2-60 Mbit/s, changing every 0.5 s
  auto cfg = config_for("fp16", 10, false);
  cfg.time_scale = 4;
  StreamReport r;
  const double wall = wall_seconds([&] { r = run_stream(*store, profile, cfg); });
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  expect_paced(r, profile, cfg.time_scale);
  const double profile_time = r.chunks.back().send_end_s;
  EXPECT_LT(wall, profile_time / cfg.time_scale + 0.5);
}

// Smallest distance of any decision from its boundary, relative to the time
// left: for the level chosen and the next finer one, |finish - SLO| / (finish
// - now). Timing noise of a few percent cannot flip a decision with a larger
// margin.
double min_decision_margin(const StreamReport& r) {
  double margin = 1e9;
  for (const auto& c : r.chunks) {
    for (int l : {c.level, c.level - 1}) {
      if (l < 0 || l >= static_cast<int>(c.level_finish_s.size())) continue;
      const double left = c.level_finish_s[l] - c.send_start_s;
      margin = std::min(margin, std::abs(c.level_finish_s[l] - r.slo_s) / left);
    }
  }
  return margin;
}

TEST(StreamReal, AgreesWithSimulationOnLevels) {
  auto store = prepared_store();
  // A constant 16 Mbit/s link and an optimistic prior: the first chunk goes
  // at fp16, then the estimator learns the real rate and the policy steps
  // down. Pick the first SLO whose simulated decisions all have a margin of
  // at least 20% (so wall-clock noise cannot flip them), then require the
  // real run to choose the same levels.
  const auto profile = BandwidthProfile::constant(16);
  auto cfg = config_for("adaptive", 0.2, true);
  cfg.prior_mbps = 200;
  StreamReport sim;
  bool found = false;
  for (double slo = 0.15; slo < 0.6 && !found; slo += 0.005) {
    cfg.slo_s = slo;
    sim = run_stream(*store, profile, cfg);
    std::set<int> levels;
    for (const auto& c : sim.chunks) levels.insert(c.level);
    found = levels.size() >= 2 && min_decision_margin(sim) >= 0.2;
  }
  ASSERT_TRUE(found) << "no well-conditioned SLO for this scenario";
  cfg.simulate = false;
  const auto real = run_stream(*store, profile, cfg);
  ASSERT_EQ(real.status, StreamStatus::Ok) << real.error;
  ASSERT_EQ(sim.chunks.size(), real.chunks.size());
  for (std::size_t i = 0; i < sim.chunks.size(); ++i) {
    EXPECT_EQ(sim.chunks[i].level_name, real.chunks[i].level_name) << "chunk " << i << " slo " << cfg.slo_s;
    // Measured from the real run's first send start, so a late start of the
    // sender thread (e.g. under a sanitizer) does not count as pacing error.
    const double real_end = real.chunks[i].send_end_s - real.chunks[0].send_start_s;
    EXPECT_NEAR(real_end, sim.chunks[i].send_end_s, 0.15 * sim.chunks[i].send_end_s + 0.01) << "chunk " << i;
  }
}

// Offsets count the in-process sender's bytes on one connection: each reply
// is a 32-byte header and the chunk's bitstream.
TEST(StreamReal, CorruptedInTransitIsAStoreErrorNotACrash) {
  auto store = prepared_store(4);
  auto cfg = config_for("int8", 5, false);
  const std::int64_t chunk0 = std::int64_t(store->get(0, {"int8", {}}).bytes.size()) + 32;
  cfg.fault.corrupt_at = chunk0 + 32 + 1000;  // inside chunk 1's bitstream
  StreamReport r;
  const double wall = wall_seconds([&] { r = run_stream(*store, BandwidthProfile::constant(200), cfg); });
  EXPECT_EQ(r.status, StreamStatus::StoreError);
  EXPECT_EQ(r.failed_chunk, 1);
  EXPECT_EQ(r.error_code, ErrorCode::Checksum) << r.error;
  EXPECT_NE(r.error.find("altered in transit"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find(r.chunks[1].key), std::string::npos) << r.error;
  EXPECT_FALSE(r.slo_met);
  EXPECT_FALSE(r.assembled);
  EXPECT_TRUE(r.chunks[0].decoded);
  EXPECT_FALSE(r.chunks[1].decoded);
  EXPECT_LT(wall, 3.0);
}

TEST(StreamReal, CorruptedReplyHeaderIsCaught) {
  auto store = prepared_store(4);
  auto cfg = config_for("int8", 5, false);
  const std::int64_t chunk0 = std::int64_t(store->get(0, {"int8", {}}).bytes.size()) + 32;
  cfg.fault.corrupt_at = chunk0 + 13;  // chunk 1's payload length
  const auto r = run_stream(*store, BandwidthProfile::constant(200), cfg);
  EXPECT_EQ(r.status, StreamStatus::StoreError);
  EXPECT_EQ(r.error_code, ErrorCode::Checksum) << r.error;
  EXPECT_EQ(r.failed_chunk, 1);
}

// The sender closes the connection part-way through each chunk after the
// first: the receiver reconnects, asks again and completes, exactly.
TEST(StreamReal, CutConnectionIsResumed) {
  auto store = prepared_store(4);
  auto cfg = config_for("int8", 5, false);
  const std::int64_t chunk0 = std::int64_t(store->get(0, {"int8", {}}).bytes.size()) + 32;
  cfg.fault.cut_after = chunk0 + 32 + 500;
  StreamReport r;
  const double wall = wall_seconds([&] { r = run_stream(*store, BandwidthProfile::constant(200), cfg); });
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  std::vector<kv::KVCache> local;
  for (const auto& c : r.chunks) local.push_back(codec::decode(store->get(c.index, {"int8", {}}).bytes));
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, kv::KVCache::concat_tokens(local)), 0.0f);
  EXPECT_EQ(r.chunks[0].attempts, 1);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(r.chunks[i].attempts, 2) << i;
  EXPECT_LT(wall, 3.0);
}

// A sender that accepts the connection and never answers: the receiver
// gives up after its timeout instead of hanging.
TEST(StreamReal, SilentSenderTimesOutInsteadOfHanging) {
  auto context = prepared_store(2);
  auto memory = make_memory_store();
  const auto m = publish(*context, testing::quantization_ladder().levels, *memory).manifest;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 4), 0);  // never accepted: the kernel completes the handshake
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  StoreOptions o;
  o.retry_timeout_s = 0.3;
  auto silent = make_server_client("127.0.0.1", ntohs(a.sin_port), o);
  StreamSource source{silent.get(), m, context->cache().info.token_ids};
  StreamReport r;
  const double wall = wall_seconds(
      [&] { r = run_stream(source, BandwidthProfile::constant(100), config_for("int8", 5, false)); });
  ::close(fd);
  EXPECT_EQ(r.status, StreamStatus::NetworkError);
  EXPECT_NE(r.error.find("no data"), std::string::npos) << r.error;
  EXPECT_LT(wall, 3.0);
}

TEST(StreamReal, StopCancelsPromptly) {
  auto store = prepared_store(8);
  auto cfg = config_for("fp16", 50, false);
  std::atomic<bool> stop{false};
  StreamHooks hooks;
  hooks.on_event = [&](const StreamEvent& e) {
    if (e.type == StreamEvent::Type::DecodeEnd) stop = true;
  };
  hooks.progress = [&](double, std::string_view) { return !stop.load(); };
  const auto slow = BandwidthProfile::constant(2);  // ~0.5 s per fp16 chunk
  const double wall = wall_seconds([&] {
    try {
      run_stream(*store, slow, cfg, hooks);
      ADD_FAILURE() << "not cancelled";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Cancelled);
    }
  });
  EXPECT_LT(wall, 2.0);
}

}  // namespace
}  // namespace kvscope::stream
