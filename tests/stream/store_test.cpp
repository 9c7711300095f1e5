// SPDX-License-Identifier: Apache-2.0
// Chunk stores on this machine (memory, folder), the key scheme, manifests
// and the checked fetch; streaming from a store.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/stream/chunk_key.h"
#include "kvscope/stream/manifest.h"
#include "stream_fixture.h"

namespace kvscope::stream {
namespace {

namespace fs = std::filesystem;
using testing::config_for;
using testing::prepared_store;
using testing::quantization_ladder;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("kvscope_store_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    fs::remove_all(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<std::uint8_t> bytes_of(const std::string& s) {
  return {s.begin(), s.end()};
}

TEST(ChunkKey, SchemeIsStableAndParses) {
  auto cache = testing::synthetic_context(100);
  const ContextId id = context_id(*cache);
  EXPECT_EQ(id.model_hash.size(), 16u);
  EXPECT_EQ(id.prefix_hash.size(), 32u);
  const std::string key = chunk_key(id, 64, 100, level_id({"int8", {}}));
  EXPECT_EQ(key.rfind("kvscope:1:{" + id.model_hash + "." + id.prefix_hash + "}:64-100:", 0), 0u) << key;
  const auto p = parse_key(key);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->context, id);
  EXPECT_FALSE(p->manifest);
  EXPECT_EQ(p->begin, 64);
  EXPECT_EQ(p->end, 100);
  EXPECT_EQ(p->level, level_id({"int8", {}}));
  const auto pm = parse_key(manifest_key(id, 256));
  ASSERT_TRUE(pm && pm->manifest);
  EXPECT_EQ(pm->chunk_tokens, 256);
  EXPECT_FALSE(parse_key("kvscope:1:{zz}:0-1:abc"));
  EXPECT_FALSE(parse_key("other"));
  // Another token sequence, another model or another level: another key.
  auto other = testing::synthetic_context(100);
  other->info.token_ids[99] += 1;
  EXPECT_NE(context_id(*other).prefix_hash, id.prefix_hash);
  other->info.model_sha256 = std::string(64, 'a');
  EXPECT_EQ(context_id(*other).model_hash, std::string(16, 'a'));
  EXPECT_NE(level_id({"int8", {}}), level_id({"int4", {}}));
  EXPECT_EQ(level_id({"cachegen", {{"key_bins", "32,16,16"}}}),
            level_id({"cachegen", {{"key_bins", "32,16,16"}}}));
  // No token ids: named by its values (and only the cache's description,
  // without the values, names nothing).
  auto bare = testing::synthetic_context(10);
  bare->info.token_ids.clear();
  EXPECT_EQ(context_id(*bare).prefix_hash, content_hash(*bare));
  EXPECT_NE(content_hash(*bare), prefix_hash(testing::synthetic_context(10)->info.token_ids));
  EXPECT_THROW(context_id(bare->info, bare->shape()), Error);
}

TEST(ChunkKey, ClusterSlotFollowsTheSpecification) {
  // The Redis Cluster specification's CRC16 check value: "123456789" -> 0x31C3.
  EXPECT_EQ(cluster_slot("123456789"), 0x31C3 % 16384);
  // Hash tags: only the part between the first braces counts.
  EXPECT_EQ(cluster_slot("{user1000}.following"), cluster_slot("{user1000}.followers"));
  EXPECT_EQ(cluster_slot("foo{}{bar}"), cluster_slot("foo{}{bar}"));
  EXPECT_NE(cluster_slot("foo{}{bar}"), cluster_slot("bar"));  // empty tag: the whole key
  EXPECT_EQ(cluster_slot("foo{{bar}}zap"), cluster_slot("{bar"));
  // Every key of a context shares its slot.
  auto cache = testing::synthetic_context(100);
  const ContextId id = context_id(*cache);
  const int slot = cluster_slot(manifest_key(id, 64));
  for (int b = 0; b < 100; b += 64)
    EXPECT_EQ(cluster_slot(chunk_key(id, b, std::min(100, b + 64), level_id({"int4", {}}))), slot);
}

void exercise_store(ChunkStore& store) {
  EXPECT_FALSE(store.get("kvscope:a").has_value());
  store.put("kvscope:a", bytes_of("alpha"));
  store.put("kvscope:b", bytes_of("beta"));
  store.put("other:c", bytes_of("gamma"));
  std::size_t paced = 0;
  FetchStats stats;
  const auto a = store.get(
      "kvscope:a", [&](std::size_t n) { paced += n; }, &stats);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(*a, bytes_of("alpha"));
  EXPECT_EQ(paced, 5u);
  EXPECT_EQ(stats.wire_bytes, 5u);
  store.put("kvscope:a", bytes_of("alpha2"));  // replaces
  EXPECT_EQ(*store.get("kvscope:a"), bytes_of("alpha2"));
  EXPECT_EQ(store.list("kvscope:"), (std::vector<std::string>{"kvscope:a", "kvscope:b"}));
  EXPECT_TRUE(store.remove("kvscope:a"));
  EXPECT_FALSE(store.remove("kvscope:a"));
  EXPECT_EQ(store.list("kvscope:"), (std::vector<std::string>{"kvscope:b"}));
  EXPECT_THROW(store.put("bad key", bytes_of("x")), Error);
  EXPECT_THROW(store.put("../escape", bytes_of("x")), Error);
}

TEST(ChunkStore, MemoryStorePutGetListRemove) {
  auto store = make_memory_store();
  exercise_store(*store);
}

TEST(ChunkStore, FolderStorePutGetListRemove) {
  TempDir dir;
  auto store = open_store("dir:" + dir.path.string());
  exercise_store(*store);
  EXPECT_EQ(store->describe(), "dir:" + dir.path.string());
  // A large value is read in pieces, each paced.
  StoreOptions small;
  small.read_bytes = 1000;
  auto chunked = make_folder_store(dir.path.string(), small);
  chunked->put("kvscope:big", std::vector<std::uint8_t>(4500, 7));
  int calls = 0;
  const auto v = chunked->get("kvscope:big", [&](std::size_t) { ++calls; });
  EXPECT_EQ(v->size(), 4500u);
  EXPECT_EQ(calls, 5);
}

TEST(ChunkStore, OpenStoreRejectsBadSpecs) {
  EXPECT_THROW(open_store("ftp://x"), Error);
  EXPECT_THROW(open_store("redis://"), Error);
  EXPECT_THROW(open_store("redis://host:notaport"), Error);
  EXPECT_THROW(open_store("tcp://nohost"), Error);
  EXPECT_THROW(open_store("dir:"), Error);
}

TEST(Manifest, PublishThenLoadRoundTrips) {
  auto context = prepared_store(3);
  auto store = make_memory_store();
  const auto levels = quantization_ladder().levels;
  const auto r = publish(*context, levels, *store);
  EXPECT_EQ(r.values, 3u * 3u + 1u);
  const auto id = context_id(context->cache());
  const auto m = load_manifest(*store, id, 64);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->levels.size(), 3u);
  EXPECT_EQ(m->chunks.size(), 3u);
  EXPECT_EQ(m->shape, context->cache().shape());
  for (int l = 0; l < 3; ++l)
    for (int c = 0; c < 3; ++c) {
      const auto& want = context->get(c, levels[l].config);
      EXPECT_EQ(m->levels[l].bytes[c], want.bytes.size());
      EXPECT_EQ(m->levels[l].crc32c[c], crc32c(want.bytes));
      EXPECT_GT(m->levels[l].decode_seconds[c], 0);
      EXPECT_EQ(fetch_chunk(*store, *m, c, l), want.bytes);
    }
  EXPECT_FALSE(load_manifest(*store, id, 128).has_value());
  // Publishing one more level keeps the others listed.
  Ladder extra;
  extra.levels = {{"int4-32", {"int4", {{"chunk_tokens", "32"}}}}};
  context->prepare(std::vector<codec::CodecConfig>{extra.levels[0].config});
  publish(*context, extra.levels, *store);
  EXPECT_EQ(load_manifest(*store, id, 64)->levels.size(), 4u);
}

TEST(Manifest, FetchNamesTheKeyOfAMissingOrCorruptChunk) {
  auto context = prepared_store(3);
  auto store = make_memory_store();
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  const std::string key = m.key(1, 1);
  // Evicted.
  store->remove(key);
  try {
    fetch_chunk(*store, m, 1, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  // One bit flipped.
  auto bytes = context->get(1, quantization_ladder().levels[1].config).bytes;
  bytes[bytes.size() / 2] ^= 4;
  store->put(key, bytes);
  try {
    fetch_chunk(*store, m, 1, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Checksum);
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
  // Another chunk's (valid) bitstream under this key: the CRC says no.
  store->put(key, context->get(2, quantization_ladder().levels[1].config).bytes);
  EXPECT_THROW(fetch_chunk(*store, m, 1, 1), Error);
  // Truncated.
  bytes.resize(100);
  store->put(key, bytes);
  EXPECT_THROW(fetch_chunk(*store, m, 1, 1), Error);
  // A corrupt manifest is an error naming its key, not a missing context.
  auto mb = serialize_manifest(m);
  mb[mb.size() - 3] ^= 1;
  store->put(m.manifest_key(), mb);
  try {
    load_manifest(*store, m.context, 64);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Checksum);
    EXPECT_NE(std::string(e.what()).find(m.manifest_key()), std::string::npos);
  }
}

StreamSource source_of(ChunkStore& store, const EncodedContext& context) {
  auto m = load_manifest(store, context_id(context.cache()), context.chunk_tokens());
  EXPECT_TRUE(m.has_value());
  return {&store, *m, context.cache().info.token_ids};
}

TEST(StreamFromStore, FolderStoreRealModeAssemblesTheEncodedCache) {
  TempDir dir;
  auto context = prepared_store(4);
  auto store = open_store("dir:" + dir.path.string());
  publish(*context, quantization_ladder().levels, *store);
  // The folder is all the receiver needs: a fresh store object on it.
  auto reader = open_store("dir:" + dir.path.string());
  const auto r =
      run_stream(source_of(*reader, *context), BandwidthProfile::constant(100), config_for("int8", 5, false));
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(r.store, "dir:" + dir.path.string());
  std::vector<kv::KVCache> local;
  for (const auto& c : r.chunks) local.push_back(codec::decode(context->get(c.index, {"int8", {}}).bytes));
  EXPECT_EQ(kv::max_abs_difference(*r.assembled, kv::KVCache::concat_tokens(local)), 0.0f);
}

TEST(StreamFromStore, EvictedChunkEndsWithAStoreErrorNamingTheKey) {
  auto context = prepared_store(4);
  auto store = make_memory_store();
  const auto m = publish(*context, quantization_ladder().levels, *store).manifest;
  const int int8 = m.find({"int8", {}});
  store->remove(m.key(2, int8));
  for (bool simulate : {true, false}) {
    const auto r = run_stream(source_of(*store, *context), BandwidthProfile::constant(100),
                              config_for("int8", 5, simulate));
    EXPECT_EQ(r.status, StreamStatus::StoreError);
    EXPECT_EQ(r.failed_chunk, 2);
    EXPECT_NE(r.error.find(m.key(2, int8)), std::string::npos) << r.error;
    EXPECT_FALSE(r.assembled);
    EXPECT_FALSE(r.slo_met);
    EXPECT_TRUE(r.chunks[1].decoded);
  }
}

TEST(StreamFromStore, PolicyLevelMissingFromTheStoreIsRejected) {
  auto context = prepared_store(2);
  auto store = make_memory_store();
  Ladder only8;
  only8.levels = {{"int8", {"int8", {}}}};
  publish(*context, only8.levels, *store);
  EXPECT_THROW(run_stream(source_of(*store, *context), BandwidthProfile::constant(100),
                          config_for("adaptive", 5, true)),
               Error);
}

// Regression guard: a raw cache without token ids (the app's imported
// caches) still streams through the in-process sender, just never as text.
TEST(StreamFromStore, CacheWithoutTokenIdsStillStreams) {
  auto cache = testing::synthetic_context(256);
  cache->info.token_ids.clear();
  auto context = std::make_shared<EncodedContext>(cache, 64);
  prepare_stream(*context, parse_policy("adaptive", quantization_ladder()));
  for (bool simulate : {true, false}) {
    const auto r = run_stream(*context, BandwidthProfile::constant(50), config_for("adaptive", 1, simulate));
    ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
    EXPECT_EQ(r.chunks.size(), 4u);
  }
}

// TTFT = context loaded + query prefill + first token, and the policy plans
// the loading to leave the query its time.
TEST(DelayModel, TtftHasThreePartsAndThePolicyBudgetsTheQuery) {
  auto context = prepared_store(8);
  StreamHooks hooks;
  RecomputeRate rate;
  rate.tokens_per_s = 1000;
  rate.first_token_s = 0.01;
  hooks.query = query_at_rate(50, rate);  // 50 ms prefill + 10 ms first token
  const auto trace = BandwidthProfile::constant(20);
  const auto r = run_stream(*context, trace, config_for("adaptive", 1.0, true), hooks);
  ASSERT_EQ(r.status, StreamStatus::Ok);
  EXPECT_NEAR(r.query_prefill_s, 0.05, 1e-12);
  EXPECT_NEAR(r.first_token_s, 0.01, 1e-12);
  EXPECT_EQ(r.query_tokens, 50);
  EXPECT_DOUBLE_EQ(r.ttft_s, r.context_loaded_s + 0.06);
  EXPECT_DOUBLE_EQ(r.context_loaded_s, r.chunks.back().decode_end_s);
  // Pick an SLO the loading alone would meet at fp16 only without the query.
  const auto fp16 = run_stream(*context, trace, config_for("fp16", 10, true));
  const double slo = fp16.context_loaded_s + 0.03;
  const auto without = run_stream(*context, trace, config_for("adaptive", slo, true));
  for (const auto& c : without.chunks) EXPECT_EQ(c.level_name, "fp16");
  const auto with = run_stream(*context, trace, config_for("adaptive", slo, true), hooks);
  EXPECT_LE(with.ttft_s, slo + 1e-9);
  EXPECT_TRUE(with.slo_met);
  EXPECT_LT(with.bytes_sent, without.bytes_sent);
  // A measured query replaces the estimates in the report.
  hooks.query->measure = [](const kv::KVCache& assembled) {
    EXPECT_EQ(assembled.shape().tokens, 512);
    return std::pair{0.2, 0.02};
  };
  const auto measured = run_stream(*context, trace, config_for("int8", 10, true), hooks);
  EXPECT_DOUBLE_EQ(measured.query_prefill_s, 0.2);
  EXPECT_DOUBLE_EQ(measured.ttft_s, measured.context_loaded_s + 0.22);
  EXPECT_EQ(measured.query_timing, "measured over the assembled cache");
}

// A text chunk is recomputed over what the receiver holds -- the decoded,
// lossy chunks before it -- not over the exact prefix.
TEST(DelayModel, TextRecomputeSeesTheDecodedPrefix) {
  auto context = prepared_store(4);
  StreamHooks hooks;
  Recomputer rec;
  std::vector<float> seen_errors;
  rec.description = "checks its input";
  rec.recompute = [&](const RecomputeRequest& req) {
    EXPECT_EQ(req.preceding->shape().tokens, req.range.begin);
    if (req.range.begin > 0) {
      const auto exact = context->cache().slice_tokens(0, req.range.begin);
      seen_errors.push_back(kv::max_abs_difference(*req.preceding, exact));
    }
    return RecomputeResult{context->cache().slice_tokens(req.range.begin, req.range.end), 0.001};
  };
  rec.estimate_seconds = [](int, int) { return 0.001; };
  hooks.recompute = rec;
  // fixed:int4 for chunks 0-2 is forced by a tiny link; text wins only
  // when nothing fits, so use the adaptive policy on a 1 Mbit/s link.
  const auto r =
      run_stream(*context, BandwidthProfile::constant(1), config_for("adaptive", 0.05, true), hooks);
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  int text = 0;
  for (const auto& c : r.chunks) text += c.level == kTextLevel;
  ASSERT_EQ(text, 4);  // nothing else fits 50 ms at 1 Mbit/s
  // All text: the prefix is exact (recomputed) each time.
  for (float e : seen_errors) EXPECT_EQ(e, 0.0f);
  // Now force lossy chunks first: int4 for the first chunk, then text.
  seen_errors.clear();
  auto cfg = config_for("adaptive", 0.25, true);
  Ladder lossy = quantization_ladder();
  lossy.levels.erase(lossy.levels.begin());  // int8, int4: no lossless level
  cfg.policy = parse_policy("adaptive", lossy);
  cfg.prior_mbps = 100;  // the first chunk looks cheap
  const auto mixed = run_stream(*context, BandwidthProfile::constant(1), cfg, hooks);
  ASSERT_EQ(mixed.status, StreamStatus::Ok) << mixed.error;
  ASSERT_NE(mixed.chunks[0].level, kTextLevel);
  bool saw_lossy = false;
  for (float e : seen_errors) saw_lossy |= e > 0.0f;
  EXPECT_TRUE(saw_lossy) << "recompute after a lossy chunk must see its decoded values";
}

}  // namespace
}  // namespace kvscope::stream
