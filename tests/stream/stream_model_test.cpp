// SPDX-License-Identifier: Apache-2.0
// The receiver's compute with the default model (label `model`): a text chunk
// recomputed over the prefix the receiver holds (Model::extend), the
// measured recompute rate, and TTFT measured over the assembled cache.
#include <gtest/gtest.h>

#include <numeric>

#include "kvscope/model/model.h"
#include "kvscope/stream/model_recomputer.h"
#include "kvscope/stream/streamer.h"
#include "test_model.h"

namespace kvscope::stream {
namespace {

std::vector<std::int32_t> some_tokens(const model::Model& m, int n) {
  std::string text;
  while (static_cast<int>(m.tokenizer().encode(text, false).size()) < n)
    text +=
        "In the beginning God created the heaven and the earth. And the earth was without form, and void. ";
  auto ids = m.tokenizer().encode(text, m.tokenizer().adds_bos());
  ids.resize(n);
  return ids;
}

class StreamWithModel : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
    model = model::Model::load(path);
    ids = some_tokens(*model, 192);
    model::PrefillOptions po;
    po.want_last_logits = false;
    full = model->prefill(ids, po).cache;
  }
  std::unique_ptr<model::Model> model;
  std::vector<std::int32_t> ids;
  kv::KVCache full;
};

// Regression guard for issue #17: text chunks used to be recomputed from the
// exact tokens of the whole prefix, not over what the receiver holds.
TEST_F(StreamWithModel, RecomputeExtendsTheCacheTheReceiverHolds) {
  RecomputeRate rate;
  rate.tokens_per_s = 1000;
  const auto rec = model_recomputer(*model, rate);
  const ChunkRange range{1, 128, 192};
  const std::span<const std::int32_t> chunk(ids.data() + 128, 64);
  // Over the exact prefix: the full prefill's KV of those tokens.
  const kv::KVCache exact_prefix = full.slice_tokens(0, 128);
  const auto res = rec.recompute({range, chunk, &exact_prefix});
  EXPECT_EQ(res.cache.shape().tokens, 64);
  EXPECT_LT(kv::max_abs_difference(res.cache, full.slice_tokens(128, 192)), 2e-3f);
  EXPECT_DOUBLE_EQ(res.seconds, 64 / 1000.0);  // charged at the recompute rate
  EXPECT_EQ(res.cache.info.positions.front(), 128);
  // Over a lossy prefix (int4-decoded): the result differs, as a real
  // receiver's would.
  const auto int4 = codec::decode(codec::encode(exact_prefix, {"int4", {}}).bytes);
  const auto lossy = rec.recompute({range, chunk, &int4});
  EXPECT_GT(kv::max_abs_difference(lossy.cache, full.slice_tokens(128, 192)), 1e-2f);
}

TEST_F(StreamWithModel, MeasuredRateAndQueryTiming) {
  const auto rate = measure_recompute_rate(*model, ids, 64);
  EXPECT_GT(rate.tokens_per_s, 10);
  EXPECT_GT(rate.first_token_s, 0);
  EXPECT_NE(rate.source.find("measured"), std::string::npos);
  auto context = std::make_shared<EncodedContext>(std::make_shared<kv::KVCache>(full), 64);
  Ladder ladder;
  ladder.levels = {{"int8", {"int8", {}}}};
  StreamConfig cfg;
  cfg.policy = parse_policy("adaptive", ladder);
  cfg.slo_s = 10;
  prepare_stream(*context, cfg.policy);
  StreamHooks hooks;
  hooks.recompute = model_recomputer(*model, rate);
  hooks.query = model_query(*model, some_tokens(*model, 12), rate);
  EXPECT_NEAR(hooks.query->prefill_s, 12 / rate.tokens_per_s, 1e-12);
  const auto r = run_stream(*context, BandwidthProfile::constant(100), cfg, hooks);
  ASSERT_EQ(r.status, StreamStatus::Ok) << r.error;
  EXPECT_EQ(r.query_tokens, 12);
  EXPECT_GT(r.query_prefill_s, 0);
  EXPECT_GT(r.first_token_s, 0);
  EXPECT_EQ(r.query_timing, "measured over the assembled cache");
  EXPECT_DOUBLE_EQ(r.ttft_s, r.context_loaded_s + r.query_prefill_s + r.first_token_s);
}

}  // namespace
}  // namespace kvscope::stream
