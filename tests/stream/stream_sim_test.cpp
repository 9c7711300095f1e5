// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>

#include "kvscope/common/error.h"
#include "stream_fixture.h"

namespace kvscope::stream {
namespace {

using testing::config_for;
using testing::prepared_store;

TEST(EncodedContext, SplitsAndEncodesOnceAndTimesEveryDecode) {
  const auto chunks = split_into_chunks(1000, 300);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[3].begin, 900);
  EXPECT_EQ(chunks[3].tokens(), 100);
  EXPECT_THROW(split_into_chunks(10, 0), Error);

  auto store = prepared_store(3);
  const codec::CodecConfig int8{"int8", {}};
  ASSERT_TRUE(store->has(int8));
  const auto* first = &store->get(0, int8);
  store->prepare(std::span(&int8, 1));  // nothing left to do: same objects
  EXPECT_EQ(first, &store->get(0, int8));
  EXPECT_GT(store->decode_seconds_per_token(int8), 0);
  // Decode time is measured per chunk and level, not copied from chunk 0.
  for (int c = 0; c < 3; ++c) EXPECT_GT(store->get(c, int8).decode_seconds, 0) << c;
  EXPECT_THROW(store->get(0, {"int4", {{"chunk_tokens", "32"}}}), Error);
  EXPECT_EQ(store->chunk_token_ids(1).front(), 100 + 64);
}

TEST(StreamSimulated, FixedInt8AccountsBytesAndTimes) {
  auto store = prepared_store();
  const auto profile = BandwidthProfile::constant(8);  // 1 MB/s
  const auto r = run_stream(*store, profile, config_for("int8", 10, true));
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  ASSERT_EQ(r.chunks.size(), 8u);
  std::size_t bytes = 0;
  double t = 0;
  for (const auto& c : r.chunks) {
    EXPECT_EQ(c.codec, "int8");
    // The in-memory store reads the value alone.
    EXPECT_EQ(c.wire_bytes, store->get(c.index, {"int8", {}}).bytes.size());
    EXPECT_EQ(c.key, chunk_key(context_id(store->cache()), c.begin, c.end, level_id({"int8", {}})));
    EXPECT_DOUBLE_EQ(c.send_start_s, t);
    EXPECT_NEAR(c.send_end_s - c.send_start_s, c.wire_bytes / 1e6, 1e-9);
    EXPECT_GE(c.decode_start_s, c.arrival_s);
    EXPECT_TRUE(c.decoded);
    t = c.send_end_s;
    bytes += c.wire_bytes;
  }
  EXPECT_EQ(r.bytes_sent, bytes);
  // No query given: TTFT is the loading alone.
  EXPECT_DOUBLE_EQ(r.ttft_s, r.chunks.back().decode_end_s);
  EXPECT_DOUBLE_EQ(r.context_loaded_s, r.ttft_s);
  EXPECT_EQ(r.query_prefill_s + r.first_token_s, 0.0);
  EXPECT_TRUE(r.slo_met);
  // The assembled cache is the int8 decode of each chunk.
  ASSERT_TRUE(r.assembled);
  EXPECT_EQ(r.assembled->shape(), store->cache().shape());
  EXPECT_LT(kv::max_abs_difference(*r.assembled, store->cache()), 0.5f);
  const auto j = report_to_json(r);
  EXPECT_TRUE(j.contains("ttft_seconds"));
  EXPECT_EQ(j["chunks"].size(), 8u);
}

// The adaptive policy meets an SLO that the fixed int8 policy misses on a
// shipped profile (issue #7's acceptance test).
TEST(StreamSimulated, AdaptiveMeetsSloThatInt8MissesOnShippedProfile) {
  auto store = prepared_store();
  const auto profile = resolve_profile("constant-20mbps");
  const auto int8 = run_stream(*store, profile, config_for("int8", 1, true));
  ASSERT_EQ(int8.status, StreamStatus::Ok);
  const double slo = 0.75 * int8.ttft_s;
  const auto missed = run_stream(*store, profile, config_for("int8", slo, true));
  EXPECT_FALSE(missed.slo_met);
  const auto adaptive = run_stream(*store, profile, config_for("adaptive", slo, true));
  EXPECT_TRUE(adaptive.slo_met) << "ttft " << adaptive.ttft_s << " slo " << slo;
  EXPECT_LT(adaptive.bytes_sent, int8.bytes_sent);
  bool used_int4 = false;
  for (const auto& c : adaptive.chunks) used_int4 |= c.codec == "int4";
  EXPECT_TRUE(used_int4);
}

TEST(StreamSimulated, PicksFinerLevelsWhenBandwidthAllows) {
  auto store = prepared_store();
  const auto fast = run_stream(*store, BandwidthProfile::constant(1000), config_for("adaptive", 1, true));
  for (const auto& c : fast.chunks) EXPECT_EQ(c.level_name, "fp16");
  // A drop mid-stream: fine first, coarser after the estimator sees the drop.
  const auto drop = BandwidthProfile::piecewise({{0, 100}, {0.05, 10}});
  const auto r = run_stream(*store, drop, config_for("adaptive", 0.25, true));
  EXPECT_EQ(r.chunks.front().level_name, "fp16");
  EXPECT_GT(r.chunks.back().level, r.chunks.front().level);
  for (std::size_t i = 1; i < r.chunks.size();
       ++i)  // the estimate only falls here, so levels never get finer
    EXPECT_GE(r.chunks[i].level, r.chunks[i - 1].level);
}

TEST(StreamSimulated, TextFallbackRecomputesWhenNothingFits) {
  auto store = prepared_store();
  StreamHooks hooks;
  hooks.recompute = fixed_rate_recomputer(store->shared_cache(), 1e6);
  // 2 Mbit/s: even int4 (~33 kB/chunk) needs ~1 s; text costs no transfer
  // (the receiver has the tokens) and 64 us of recompute.
  auto cfg = config_for("adaptive", 0.2, true);
  const auto r = run_stream(*store, BandwidthProfile::constant(2), cfg, hooks);
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  int text = 0;
  for (const auto& c : r.chunks) text += c.level == kTextLevel;
  EXPECT_GT(text, 0);
  EXPECT_TRUE(r.slo_met) << r.ttft_s;
  EXPECT_NE(r.recompute.find("recompute rate"), std::string::npos);
  // Text chunks carry the recomputed (exact) KV.
  for (const auto& c : r.chunks)
    if (c.level == kTextLevel) {
      const auto got = r.assembled->slice_tokens(c.begin, c.end);
      EXPECT_EQ(kv::max_abs_difference(got, store->cache().slice_tokens(c.begin, c.end)), 0.0f);
    }
  // Without a recomputer the adaptive policy falls back to its coarsest level.
  const auto no_text = run_stream(*store, BandwidthProfile::constant(2), cfg);
  for (const auto& c : no_text.chunks) EXPECT_EQ(c.level_name, "int4");
}

TEST(StreamSimulated, TextPolicyNeedsRecomputer) {
  auto store = prepared_store(2);
  EXPECT_THROW(run_stream(*store, BandwidthProfile::constant(10), config_for("text", 1, true)), Error);
  StreamHooks hooks;
  hooks.recompute = fixed_rate_recomputer(store->shared_cache(), 1000);
  const auto r = run_stream(*store, BandwidthProfile::constant(10), config_for("text", 1, true), hooks);
  // Text moves no bytes; the receiver's recompute (64 ms per chunk) is all.
  EXPECT_EQ(r.bytes_sent, 0u);
  EXPECT_NEAR(r.ttft_s, 2 * 64 / 1000.0, 1e-9);
  EXPECT_NEAR(r.chunks[0].decode_seconds, 0.064, 1e-12);
}

TEST(StreamSimulated, EventsAndCancel) {
  auto store = prepared_store(4);
  int decisions = 0, decoded = 0, finished = 0;
  StreamHooks hooks;
  hooks.on_event = [&](const StreamEvent& e) {
    decisions += e.type == StreamEvent::Type::Decision;
    decoded += e.type == StreamEvent::Type::DecodeEnd;
    finished += e.type == StreamEvent::Type::Finished;
  };
  run_stream(*store, BandwidthProfile::constant(10), config_for("int8", 1, true), hooks);
  EXPECT_EQ(decisions, 4);
  EXPECT_EQ(decoded, 4);
  EXPECT_EQ(finished, 1);
  hooks.progress = [](double fraction, std::string_view) { return fraction < 0.5; };
  try {
    run_stream(*store, BandwidthProfile::constant(10), config_for("int8", 1, true), hooks);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Cancelled);
  }
}

TEST(StreamSimulated, RejectsBadConfig) {
  auto store = prepared_store(2);
  EXPECT_THROW(run_stream(*store, BandwidthProfile::constant(10), config_for("int8", 0, true)), Error);
  auto cfg = config_for("int8", 1, false);
  cfg.time_scale = 0;
  EXPECT_THROW(run_stream(*store, BandwidthProfile::constant(10), cfg), Error);
  Ladder other;
  other.levels = {{"unprepared", {"int4", {{"chunk_tokens", "16"}}}}};
  auto cfg2 = config_for("int8", 1, true);
  cfg2.policy = parse_policy("fixed:unprepared", other);
  EXPECT_THROW(run_stream(*store, BandwidthProfile::constant(10), cfg2), Error);
}

}  // namespace
}  // namespace kvscope::stream

namespace kvscope::stream {
namespace {

using testing::config_for;

// The transform codec as ladder levels (issue #15: it appears in ladders): a
// stream of chunks coded by transform with the chunk's own basis decodes into
// the assembled cache, smaller than fp16 on the wire, and the adaptive policy
// can choose between its budgets.
TEST(StreamSimulated, TransformLevelsStreamAndAdapt) {
  Ladder ladder;
  ladder.name = "transform";
  ladder.levels = {{"fp16", {"fp16", {}}},
                   {"transform-3", {"transform", {{"basis", "cache"}, {"bits", "3"}}}},
                   {"transform-1", {"transform", {{"basis", "cache"}, {"bits", "1"}}}}};
  auto store = std::make_shared<EncodedContext>(testing::synthetic_context(64 * 4), 64);
  StreamConfig c = config_for("int8", 10, true);
  c.policy = parse_policy("fixed:transform-3", ladder);
  prepare_stream(*store, c.policy);
  const auto r = run_stream(*store, BandwidthProfile::constant(8), c);
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  ASSERT_EQ(r.chunks.size(), 4u);
  for (const auto& ch : r.chunks) {
    EXPECT_EQ(ch.codec, "transform");
    EXPECT_TRUE(ch.decoded);
    EXPECT_LT(ch.wire_bytes, std::size_t(64) * 4 * 2 * 2 * 64 * 2);  // fp16 bytes of a chunk
  }
  ASSERT_TRUE(r.assembled);
  const auto& orig = store->cache();
  double err = 0, energy = 0;
  for (std::size_t i = 0; i < orig.data().size(); ++i) {
    err += std::pow(double(r.assembled->data()[i]) - orig.data()[i], 2);
    energy += std::pow(double(orig.data()[i]), 2);
  }
  EXPECT_LT(err, 0.2 * energy);  // most of the signal gets through (the chunk ships its own basis)
  // Adaptive over the transform budgets: a slow link pushes it to the coarser one.
  StreamConfig a = c;
  a.policy = parse_policy("adaptive", ladder);
  prepare_stream(*store, a.policy);
  a.slo_s = 0.05;
  const auto slow = run_stream(*store, BandwidthProfile::constant(2), a);
  ASSERT_EQ(slow.status, StreamStatus::Ok) << slow.error;
  EXPECT_EQ(slow.chunks.back().level_name, "transform-1");
}

}  // namespace
}  // namespace kvscope::stream
