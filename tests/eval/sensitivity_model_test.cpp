// SPDX-License-Identifier: Apache-2.0
// Layer sensitivity (core/eval/sensitivity.h) and the attention measurement
// behind attention sinks (model::Model::attention_to_cache), on the default
// model (label `model`); short contexts keep it quick on 2 cores.
#include <gtest/gtest.h>

#include <numeric>

#include "default_model_suite.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/eval/sensitivity.h"
#include "kvscope/model/model.h"
#include "test_model.h"

namespace kvscope::eval {
namespace {

class Sensitivity : public DefaultModelSuite {};

TEST_F(Sensitivity, CoarseningOneLayerRaisesTheKlAndTheSectionRoundTrips) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  EvalConfig c;
  c.max_context_tokens = 96;
  c.continuation_tokens = 16;
  c.greedy_tokens = 0;
  Evaluator ev(*model_, c);
  const auto& ref = ev.reference(genesis(), "genesis");
  const auto s = measure_sensitivity(ev, {&ref}, {{"sinks", "1"}}, 64, 6);
  ASSERT_EQ(s.layers, model_->config().layers);
  ASSERT_EQ(int(s.key_kl.size()), s.layers);
  EXPECT_GE(s.base_kl, 0.0);
  // Coarse bins in one layer cost quality in most layers.
  int raised = 0;
  for (int l = 0; l < s.layers; ++l) raised += (s.key_kl[l] > 0) + (s.value_kl[l] > 0);
  EXPECT_GT(raised, s.layers);
  EXPECT_EQ(s.contexts, std::vector<std::string>{"genesis"});
  EXPECT_EQ(s.params, "sinks=1");
  const auto back = codec::parse_sensitivity(codec::serialize_sensitivity(s), "x");
  EXPECT_EQ(back.key_kl, s.key_kl);
  EXPECT_THROW(measure_sensitivity(ev, {&ref}, {}, 8, 8), Error);
}

TEST_F(Sensitivity, AttentionToCacheIsADistributionAndTokenZeroIsASink) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  auto ids = model_->tokenizer().encode(genesis().substr(0, 2000), true);
  ids.resize(160);
  const auto cache = model_->prefill(std::span(ids).first(128)).cache;
  const std::vector<std::int32_t> queries(ids.begin() + 128, ids.end());
  const auto w = model_->attention_to_cache(cache, queries);
  const int L = model_->config().layers, T = 128;
  ASSERT_EQ(w.size(), std::size_t(L) * T);
  double token0 = 0;
  for (int l = 0; l < L; ++l) {
    const double sum =
        std::accumulate(w.begin() + std::size_t(l) * T, w.begin() + std::size_t(l + 1) * T, 0.0);
    EXPECT_GT(sum, 0.0);
    EXPECT_LE(sum, 1.0 + 1e-4) << "layer " << l;
    for (int t = 0; t < T; ++t) EXPECT_GE(w[std::size_t(l) * T + t], 0.0f);
    token0 += w[std::size_t(l) * T] / L;
  }
  // Token 0 draws far more than its 1/128 share: the attention sink.
  EXPECT_GT(token0, 0.1);
  EXPECT_THROW(model_->attention_to_cache(cache, std::vector<std::int32_t>{}), Error);
}

}  // namespace
}  // namespace kvscope::eval
