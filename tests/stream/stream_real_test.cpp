// Real-transport tests: sender and receiver over TCP on 127.0.0.1.
//
// Timing tolerances (a loaded 2-core CI machine; sleeps wake late, never early):
// - pacing: each chunk's send duration is within 10% + 5 ms of wall time
//   (times the time scale) of what the profile's integral says;
// - sim vs real: the same levels for every chunk; send ends within
//   15% + 10 ms of wall time of the simulated ones.
#include <gtest/gtest.h>

#include <chrono>

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

void expect_paced(const StreamReport& r, const BandwidthProfile& profile, double scale) {
  for (const auto& c : r.chunks) {
    const double want = profile.transfer_end(c.send_start_s, double(c.wire_bytes), c.index) - c.send_start_s;
    const double got = c.send_end_s - c.send_start_s;
    EXPECT_NEAR(got, want, 0.10 * want + 0.005 * scale) << "chunk " << c.index;
    EXPECT_GE(c.arrival_s, c.send_start_s);
    EXPECT_LT(c.arrival_s - c.send_end_s, 0.005 * scale) << "chunk " << c.index;
  }
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
  const auto profile = BandwidthProfile::constant(40);  // 5 MB/s: ~1 MB in ~0.21 s
  const auto r = run_stream(*store, profile, config_for("fp16", 5, false));
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  expect_paced(r, profile, 1.0);
  const double total = r.chunks.back().send_end_s;
  EXPECT_NEAR(total, double(r.bytes_sent) / 5e6, 0.1 * total + 0.01);
}

TEST(StreamReal, PacedRateFollowsShippedTraceWithTimeScale) {
  auto store = prepared_store();
  const auto profile = resolve_profile("wifi-drop");  // 100 -> 15 Mbit/s at 1 s
  auto cfg = config_for("fp16", 10, false);
  cfg.time_scale = 8;
  StreamReport r;
  const double wall = wall_seconds([&] { r = run_stream(*store, profile, cfg); });
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  expect_paced(r, profile, cfg.time_scale);
  const double profile_time = r.chunks.back().send_end_s;
  EXPECT_LT(wall, profile_time / cfg.time_scale + 0.5);
}

TEST(StreamReal, AgreesWithSimulationOnLevels) {
  auto store = prepared_store();
  // 10 MB/s, dropping to 1 MB/s after 60 ms.
  const auto profile = BandwidthProfile::piecewise({{0, 80}, {0.06, 8}});
  const auto sim = run_stream(*store, profile, config_for("adaptive", 0.3, true));
  const auto real = run_stream(*store, profile, config_for("adaptive", 0.3, false));
  ASSERT_EQ(real.status, StreamStatus::Ok) << real.error;
  ASSERT_EQ(sim.chunks.size(), real.chunks.size());
  bool changed = false;
  for (std::size_t i = 0; i < sim.chunks.size(); ++i) {
    EXPECT_EQ(sim.chunks[i].level_name, real.chunks[i].level_name) << "chunk " << i;
    EXPECT_NEAR(real.chunks[i].send_end_s, sim.chunks[i].send_end_s, 0.15 * sim.chunks[i].send_end_s + 0.01)
        << "chunk " << i;
    changed |= sim.chunks[i].level != sim.chunks[0].level;
  }
  EXPECT_TRUE(changed) << "the scenario should make the policy switch levels";
}

TEST(StreamReal, CorruptedPayloadIsADecodeErrorNotACrash) {
  auto store = prepared_store(4);
  auto cfg = config_for("int8", 5, false);
  const std::int64_t chunk0 = std::int64_t(store->get(0, {"int8", {}}).bytes.size()) + 32;
  cfg.fault.corrupt_at = chunk0 + 32 + 1000;  // inside chunk 1's bitstream
  StreamReport r;
  const double wall = wall_seconds([&] { r = run_stream(*store, BandwidthProfile::constant(200), cfg); });
  EXPECT_EQ(r.status, StreamStatus::DecodeError);
  EXPECT_EQ(r.failed_chunk, 1);
  ASSERT_TRUE(r.error_code.has_value());
  EXPECT_TRUE(*r.error_code == ErrorCode::Checksum || *r.error_code == ErrorCode::Format) << r.error;
  EXPECT_FALSE(r.slo_met);
  EXPECT_FALSE(r.assembled);
  EXPECT_TRUE(r.chunks[0].decoded);
  EXPECT_FALSE(r.chunks[1].decoded);
  EXPECT_LT(wall, 3.0);
}

TEST(StreamReal, CorruptedFrameHeaderIsANetworkError) {
  auto store = prepared_store(4);
  auto cfg = config_for("int8", 5, false);
  const std::int64_t chunk0 = std::int64_t(store->get(0, {"int8", {}}).bytes.size()) + 32;
  cfg.fault.corrupt_at = chunk0 + 13;  // chunk 1's payload length
  const auto r = run_stream(*store, BandwidthProfile::constant(200), cfg);
  EXPECT_EQ(r.status, StreamStatus::NetworkError);
  EXPECT_EQ(r.error_code, ErrorCode::Checksum) << r.error;
  EXPECT_EQ(r.failed_chunk, 1);
}

TEST(StreamReal, CutConnectionEndsCleanly) {
  auto store = prepared_store(4);
  auto cfg = config_for("int8", 5, false);
  const std::int64_t chunk0 = std::int64_t(store->get(0, {"int8", {}}).bytes.size()) + 32;
  cfg.fault.cut_after = chunk0 + 32 + 500;
  StreamReport r;
  const double wall = wall_seconds([&] { r = run_stream(*store, BandwidthProfile::constant(200), cfg); });
  EXPECT_EQ(r.status, StreamStatus::NetworkError);
  EXPECT_EQ(r.error_code, ErrorCode::Network);
  EXPECT_EQ(r.failed_chunk, 1);
  EXPECT_NE(r.error.find("closed"), std::string::npos) << r.error;
  EXPECT_TRUE(r.chunks[0].decoded);
  EXPECT_LT(wall, 3.0);
}

TEST(StreamReal, StalledLinkTimesOutInsteadOfHanging) {
  auto store = prepared_store(2);
  auto cfg = config_for("int8", 5, false);
  cfg.idle_timeout_s = 0.3;
  // Nothing flows for 60 s.
  const auto stalled = BandwidthProfile::piecewise({{0, 0}, {60, 100}});
  StreamReport r;
  const double wall = wall_seconds([&] { r = run_stream(*store, stalled, cfg); });
  EXPECT_EQ(r.status, StreamStatus::NetworkError);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
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
