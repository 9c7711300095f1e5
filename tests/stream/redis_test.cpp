// SPDX-License-Identifier: Apache-2.0
// Chunk stores in Redis: one server and a three-master Redis Cluster, both
// started by the tests on free loopback ports (redis_fixture.h), and the
// faults a receiver must survive: the server killed and restarted, a cluster
// node killed, a slot moving mid-stream, a chunk corrupted or evicted, a
// full store. Each ends in a clear status or resumes; none hangs; none
// yields a wrong cache.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "kvscope/common/error.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/redis_store.h"
#include "kvscope/stream/store_load.h"
#include "redis_fixture.h"
#include "stream_fixture.h"

namespace kvscope::stream {
namespace {

using testing::config_for;
using testing::prepared_store;
using testing::quantization_ladder;
using testing::RedisCluster;
using testing::RedisServer;
using testing::ScratchDir;

double wall_seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::unique_ptr<RedisChunkStore> open_redis(const std::string& spec, double timeout = 5.0) {
  StoreOptions o;
  o.retry_timeout_s = timeout;
  return std::make_unique<RedisChunkStore>(parse_redis_spec(spec), o);
}

/// What the receiver must assemble: each chunk's int8 bitstream decoded here.
kv::KVCache expected_int8(const EncodedContext& context) {
  std::vector<kv::KVCache> parts;
  for (const auto& c : context.chunks())
    parts.push_back(codec::decode(context.get(c.index, {"int8", {}}).bytes));
  return kv::KVCache::concat_tokens(parts);
}

StreamSource source_of(ChunkStore& store, const EncodedContext& context) {
  auto m = load_manifest(store, context_id(context.cache()), context.chunk_tokens());
  if (!m) throw Error(ErrorCode::Io, "manifest missing");
  return {&store, *m, context.cache().info.token_ids};
}

/// int8 chunks of ~66 kB at 2 Mbit/s: about a quarter second each.
StreamConfig slow_int8() {
  return config_for("int8", 30, false);
}
const BandwidthProfile kSlow = BandwidthProfile::constant(2);

TEST(RedisStore, SpecParsing) {
  const auto e = parse_redis_spec("redis://127.0.0.1:7000,localhost:7001,hostonly");
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].text(), "127.0.0.1:7000");
  EXPECT_EQ(e[1].port, 7001);
  EXPECT_EQ(e[2].port, 6379);
  EXPECT_THROW(parse_redis_spec("redis://:7000"), Error);
  EXPECT_THROW(parse_redis_spec("redis://h:0"), Error);
}

TEST(RedisStore, UnreachableServerFailsInTime) {
  const int port = testing::free_port();  // nothing listens there
  StoreOptions o;
  o.retry_timeout_s = 0.5;
  double wall = wall_seconds([&] {
    try {
      RedisChunkStore s({{"127.0.0.1", port}}, o);
      ADD_FAILURE() << "connected to nothing";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Network);
      EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
    }
  });
  EXPECT_LT(wall, 3.0);
}

TEST(RedisStore, SingleServerPutGetListRemove) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_single");
  RedisServer server(dir.path);
  auto store = open_redis(server.spec());
  EXPECT_FALSE(store->is_cluster());
  EXPECT_NE(store->describe().find("single server"), std::string::npos);
  EXPECT_FALSE(store->get("kvscope:x").has_value());
  std::vector<std::uint8_t> big(300000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7);
  store->put("kvscope:x", big);
  store->put("kvscope:y*[]", std::vector<std::uint8_t>{1, 2});  // glob characters are escaped when listing
  store->put("other", std::vector<std::uint8_t>{3});
  std::size_t paced = 0;
  int calls = 0;
  FetchStats stats;
  const auto v = store->get(
      "kvscope:x", [&](std::size_t n) { paced += n, ++calls; }, &stats);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, big);
  EXPECT_GT(calls, 3);  // read in pieces of at most 64 KiB
  EXPECT_EQ(paced, stats.wire_bytes);
  EXPECT_GT(stats.wire_bytes, big.size());  // the protocol's bytes count too
  EXPECT_EQ(store->list("kvscope:"), (std::vector<std::string>{"kvscope:x", "kvscope:y*[]"}));
  EXPECT_EQ(store->list("kvscope:y*"), (std::vector<std::string>{"kvscope:y*[]"}));
  EXPECT_TRUE(store->remove("kvscope:x"));
  EXPECT_FALSE(store->remove("kvscope:x"));
}

TEST(RedisStore, FullStoreRefusesPutsLoudly) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_full");
  RedisServer server(dir.path, {"--maxmemory", "2mb", "--maxmemory-policy", "noeviction"});
  auto store = open_redis(server.spec());
  try {
    for (int i = 0; i < 100; ++i)
      store->put("kvscope:fill" + std::to_string(i), std::vector<std::uint8_t>(200000, 1));
    FAIL() << "a 2 MB Redis took 20 MB";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find("kvscope:fill"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("OOM"), std::string::npos) << e.what();
  }
}

TEST(RedisStream, RealModeFromOneServerAssemblesTheEncodedCache) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_stream");
  RedisServer server(dir.path);
  auto context = prepared_store(4);
  auto store = open_redis(server.spec());
  publish(*context, quantization_ladder().levels, *store);
  const auto r =
      run_stream(source_of(*store, *context), BandwidthProfile::constant(50), config_for("int8", 5, false));
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, expected_int8(*context)), 0.0f);
  for (const auto& c : r.chunks) {
    EXPECT_EQ(c.node, server.address());
    EXPECT_GT(c.wire_bytes, c.payload_bytes);
  }
}

TEST(RedisStream, ServerKilledAndRestartedMidStreamResumes) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_restart");
  RedisServer server(dir.path);
  auto context = prepared_store(8);
  auto store = open_redis(server.spec(), 8.0);
  publish(*context, quantization_ladder().levels, *store);
  ASSERT_EQ(server.command({"SAVE"}), "OK");  // the restart reloads dump.rdb
  std::thread chaos;
  std::atomic<bool> once{false};
  StreamHooks hooks;
  hooks.on_event = [&](const StreamEvent& e) {
    if (e.type == StreamEvent::Type::Arrival && e.chunk.index == 2 && !once.exchange(true))
      chaos = std::thread([&] {
        server.kill();
        std::this_thread::sleep_for(std::chrono::milliseconds(700));
        server.restart();
      });
  };
  const auto r = run_stream(source_of(*store, *context), kSlow, slow_int8(), hooks);
  if (chaos.joinable()) chaos.join();
  ASSERT_TRUE(once.load());
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, expected_int8(*context)), 0.0f);
  EXPECT_GT(store->counters().retries, 0);
  int retried = 0;
  for (const auto& c : r.chunks) retried += c.attempts > 1;
  EXPECT_GE(retried, 1);
}

TEST(RedisStream, ServerRestartedEmptyEndsWithAStoreErrorNamingTheKey) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_restart_empty");
  RedisServer server(dir.path);
  auto context = prepared_store(8);
  auto store = open_redis(server.spec(), 8.0);
  publish(*context, quantization_ladder().levels, *store);
  std::thread chaos;
  std::atomic<bool> once{false};
  StreamHooks hooks;
  hooks.on_event = [&](const StreamEvent& e) {
    if (e.type == StreamEvent::Type::Arrival && e.chunk.index == 1 && !once.exchange(true))
      chaos = std::thread([&] {
        server.kill();  // nothing saved: it comes back empty
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        server.restart();
      });
  };
  StreamReport r;
  const double wall =
      wall_seconds([&] { r = run_stream(source_of(*store, *context), kSlow, slow_int8(), hooks); });
  if (chaos.joinable()) chaos.join();
  EXPECT_EQ(r.status, StreamStatus::StoreError) << r.error;
  EXPECT_NE(r.error.find("missing"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("kvscope:1:{"), std::string::npos) << r.error;
  EXPECT_FALSE(r.assembled);
  EXPECT_LT(wall, 15.0);
}

TEST(RedisStream, CorruptedChunkIsCaughtAndNamed) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_corrupt");
  RedisServer server(dir.path);
  auto context = prepared_store(4);
  auto store = open_redis(server.spec());
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  const std::string key = m.key(2, m.find({"int8", {}}));
  ASSERT_EQ(server.command({"SETRANGE", key, "5000", "X"}),
            std::to_string(m.levels[m.find({"int8", {}})].bytes[2]));
  const auto r =
      run_stream(source_of(*store, *context), BandwidthProfile::constant(100), config_for("int8", 5, false));
  EXPECT_EQ(r.status, StreamStatus::StoreError);
  EXPECT_EQ(r.error_code, ErrorCode::Checksum);
  EXPECT_EQ(r.failed_chunk, 2);
  EXPECT_NE(r.error.find(key), std::string::npos) << r.error;
  EXPECT_FALSE(r.assembled);
}

TEST(RedisStream, EvictedChunkIsAStoreErrorNamingTheKey) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_evict");
  RedisServer server(dir.path, {"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"});
  auto context = prepared_store(8);
  auto store = open_redis(server.spec());
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  // Shrink the memory limit below what is in use: Redis evicts keys until
  // it fits, as it would under pressure from other tenants.
  const std::string info = server.command({"INFO", "memory"});
  const auto at = info.find("used_memory:");
  ASSERT_NE(at, std::string::npos);
  const long long used = std::stoll(info.substr(at + 12));
  server.command({"CONFIG", "SET", "maxmemory", std::to_string(used - 600000)});
  server.command({"SET", "kvscope:trigger", "x"});  // an eviction pass runs before each write
  // The manifest may have gone too; put it back (it is small).
  store->put(m.manifest_key(), serialize_manifest(m));
  int missing = 0;
  for (int l = 0; l < 3; ++l)
    for (int c = 0; c < 8; ++c) missing += store->get(m.key(c, l)).has_value() ? 0 : 1;
  ASSERT_GT(missing, 0) << "nothing was evicted";
  const auto r =
      run_stream(source_of(*store, *context), BandwidthProfile::constant(100), config_for("fp16", 5, false));
  // fp16 is the largest level; keep going until an evicted one is hit.
  StreamReport hit = r;
  for (const char* p : {"int8", "fixed:int4"}) {
    if (hit.status != StreamStatus::Ok) break;
    hit = run_stream(source_of(*store, *context), BandwidthProfile::constant(100), config_for(p, 5, false));
  }
  ASSERT_EQ(hit.status, StreamStatus::StoreError) << "every level survived eviction";
  EXPECT_NE(hit.error.find("missing"), std::string::npos) << hit.error;
  EXPECT_NE(hit.error.find(hit.chunks[hit.failed_chunk].key), std::string::npos) << hit.error;
}

TEST(RedisCluster, RoutesEveryKeyOfAContextToOneNodeAndStreams) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_cluster");
  RedisCluster cluster(dir.path);
  auto context = prepared_store(4);
  auto store = open_redis(cluster.spec());
  EXPECT_TRUE(store->is_cluster());
  EXPECT_EQ(store->masters().size(), 3u);
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  const std::string owner = store->node_for(m.manifest_key());
  // The node the client routes to is the one Redis says owns the slot, and
  // holds all 13 keys of the context.
  const int slot = cluster_slot(m.manifest_key());
  EXPECT_EQ(cluster.nodes[0]->command({"CLUSTER", "KEYSLOT", m.manifest_key()}), std::to_string(slot));
  const int i = cluster.index_of(owner);
  ASSERT_GE(i, 0) << owner;
  EXPECT_EQ(cluster.nodes[i]->command({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}), "13");
  EXPECT_EQ(store->list(context_prefix(m.context)).size(), 13u);
  // A client seeded with another node finds it too.
  auto other = open_redis("redis://" + cluster.nodes[(i + 1) % 3]->address());
  const auto r =
      run_stream(source_of(*other, *context), BandwidthProfile::constant(50), config_for("int8", 5, false));
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, expected_int8(*context)), 0.0f);
  for (const auto& c : r.chunks) EXPECT_EQ(c.node, owner);
}

// The context's slot is resharded to another master while a receiver
// streams it: keys move one by one (ASK while the slot is half-moved), then
// the slot's owner changes (MOVED). The stream completes, exactly.
TEST(RedisCluster, SlotMovingDuringAStreamIsFollowed) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_reshard");
  RedisCluster cluster(dir.path);
  auto context = prepared_store(8);
  auto store = open_redis(cluster.spec(), 8.0);
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  const int slot = cluster_slot(m.manifest_key());
  const int from = cluster.index_of(store->node_for(m.manifest_key()));
  const int to = (from + 1) % 3;
  auto& src = *cluster.nodes[from];
  auto& dst = *cluster.nodes[to];
  const std::string s = std::to_string(slot);
  std::thread reshard;
  std::atomic<bool> once{false};
  std::string reshard_error;
  StreamHooks hooks;
  hooks.on_event = [&](const StreamEvent& e) {
    if (e.type != StreamEvent::Type::Arrival || e.chunk.index != 1 || once.exchange(true)) return;
    reshard = std::thread([&] {
      auto ok = [&](const std::string& reply, const char* what) {
        if (reply != "OK" && reshard_error.empty()) reshard_error = std::string(what) + ": " + reply;
      };
      ok(dst.command({"CLUSTER", "SETSLOT", s, "IMPORTING", cluster.id(from)}), "importing");
      ok(src.command({"CLUSTER", "SETSLOT", s, "MIGRATING", cluster.id(to)}), "migrating");
      // Move the keys one at a time, slowly, so the receiver meets a
      // half-moved slot (ASK).
      for (;;) {
        const std::string keys = src.command({"CLUSTER", "GETKEYSINSLOT", s, "1"});
        if (keys.empty()) break;
        ok(src.command({"MIGRATE", "127.0.0.1", std::to_string(dst.port()), keys, "0", "5000"}), "migrate");
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
      }
      for (auto* n : {&dst, &src, cluster.nodes[(from + 2) % 3].get()})
        ok(n->command({"CLUSTER", "SETSLOT", s, "NODE", cluster.id(to)}), "setslot node");
    });
  };
  const auto r = run_stream(source_of(*store, *context), kSlow, slow_int8(), hooks);
  if (reshard.joinable()) reshard.join();
  ASSERT_TRUE(once.load());
  EXPECT_EQ(reshard_error, "");
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, expected_int8(*context)), 0.0f);
  const auto counters = store->counters();
  EXPECT_GT(counters.ask + counters.moved, 0) << "no redirection was followed";
  // Once the move is complete, the next command learns the new owner.
  const int moved_before = store->counters().moved;
  EXPECT_TRUE(store->get(m.manifest_key()).has_value());
  EXPECT_EQ(store->node_for(m.manifest_key()), dst.address());
  EXPECT_GE(store->counters().moved + store->counters().slot_reloads, moved_before);
}

TEST(RedisCluster, NodeKilledMidStreamEndsInTimeWithAClearStatus) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_node_killed");
  RedisCluster cluster(dir.path);
  auto context = prepared_store(8);
  auto store = open_redis(cluster.spec(), 1.5);
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  const int owner = cluster.index_of(store->node_for(m.manifest_key()));
  std::atomic<bool> once{false};
  StreamHooks hooks;
  hooks.on_event = [&](const StreamEvent& e) {
    if (e.type == StreamEvent::Type::Arrival && e.chunk.index == 1 && !once.exchange(true))
      cluster.nodes[owner]->kill();
  };
  StreamReport r;
  const double wall =
      wall_seconds([&] { r = run_stream(source_of(*store, *context), kSlow, slow_int8(), hooks); });
  ASSERT_TRUE(once.load());
  // No replica holds the slot: the receiver retries for its timeout, then
  // reports which chunk and key could not be fetched.
  EXPECT_EQ(r.status, StreamStatus::NetworkError) << r.error;
  EXPECT_NE(r.error.find("kvscope:1:{"), std::string::npos) << r.error;
  EXPECT_FALSE(r.assembled);
  EXPECT_LT(wall, 12.0);
}

// With a replica per master, the death of the context's master is followed
// by the replica's promotion: the receiver re-reads the slot map and
// resumes from the new master, exactly.
TEST(RedisCluster, MasterKilledMidStreamFailsOverToItsReplica) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_failover");
  RedisCluster cluster(dir.path, /*replicas=*/true);
  auto context = prepared_store(8);
  auto store = open_redis(cluster.spec(), 15.0);
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  const int owner = cluster.index_of(store->node_for(m.manifest_key()));
  ASSERT_GE(owner, 0);
  ASSERT_LT(owner, 3);
  // Everything written has reached the replica before the master dies.
  std::string acked;
  for (int i = 0; i < 10 && acked != "1"; ++i) acked = cluster.nodes[owner]->command({"WAIT", "1", "1000"});
  ASSERT_EQ(acked, "1") << "the replica did not acknowledge the writes";
  const std::string replica = cluster.nodes[owner + 3]->address();
  std::atomic<bool> once{false};
  StreamHooks hooks;
  hooks.on_event = [&](const StreamEvent& e) {
    if (e.type == StreamEvent::Type::Arrival && e.chunk.index == 1 && !once.exchange(true))
      cluster.nodes[owner]->kill();
  };
  StreamReport r;
  const double wall =
      wall_seconds([&] { r = run_stream(source_of(*store, *context), kSlow, slow_int8(), hooks); });
  ASSERT_TRUE(once.load());
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, expected_int8(*context)), 0.0f);
  EXPECT_EQ(r.chunks.back().node, replica);
  EXPECT_GT(store->counters().retries, 0);
  EXPECT_LT(wall, 30.0);
}

// The short version of the load test (`kvscope-cli store bench` runs the
// 60 s one): 16 receivers on one server, every chunk checked.
TEST(RedisLoad, SixteenReceiversShortRunLosesNothing) {
  KVSCOPE_REQUIRE_REDIS_OR_SKIP();
  ScratchDir dir("redis_load");
  RedisServer server(dir.path);
  auto store = open_redis(server.spec());
  std::vector<Manifest> contexts;
  for (int r = 0; r < 16; ++r) {
    auto cache = testing::synthetic_context(256, 100 + r);
    for (auto& t : cache->info.token_ids) t += r * 1000;  // distinct contexts
    EncodedContext context(cache, 64);
    PrepareOptions prep;
    prep.measure_decode = false;
    const auto ladder = quantization_ladder();
    std::vector<codec::CodecConfig> configs;
    for (const auto& l : ladder.levels) configs.push_back(l.config);
    context.prepare(configs, prep);
    contexts.push_back(publish(context, ladder.levels, *store).manifest);
  }
  LoadTestConfig cfg;
  cfg.receivers = 16;
  cfg.seconds = 3;
  const auto r = run_load_test(server.spec(), contexts, cfg);
  EXPECT_GT(r.chunks, 100u);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.missing, 0u);
  EXPECT_EQ(r.network_errors, 0u);
  EXPECT_GT(r.fetch_p99_ms, 0);
  std::printf("16 receivers, %.1f s: %llu chunks, %.1f MB/s, fetch p50 %.2f ms, p99 %.2f ms\n", r.seconds,
              static_cast<unsigned long long>(r.chunks), r.megabytes_per_s, r.fetch_p50_ms, r.fetch_p99_ms);
}

}  // namespace
}  // namespace kvscope::stream
