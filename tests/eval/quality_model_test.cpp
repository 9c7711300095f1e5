// SPDX-License-Identifier: Apache-2.0
// Quality evaluation with the default model (label `model`). Contexts are
// kept to a couple of hundred tokens so the suite stays short on 2 cores.
#include <gtest/gtest.h>

#include "default_model_suite.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/paths.h"
#include "kvscope/eval/dataset.h"
#include "kvscope/eval/quality.h"
#include "kvscope/eval/report.h"
#include "kvscope/model/model.h"
#include "test_model.h"

namespace kvscope::eval {
namespace {

class EvalQuality : public DefaultModelSuite {
 protected:
  static EvalConfig short_config() {
    EvalConfig c;
    c.max_context_tokens = 160;
    c.continuation_tokens = 24;
    c.greedy_tokens = 6;
    c.task_greedy_tokens = 5;
    return c;
  }
};

TEST_F(EvalQuality, Fp16IsLosslessAgainstTheFp16Reference) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  Evaluator ev(*model_, short_config());
  const auto& ref = ev.reference(genesis(), "kjv-genesis");
  EXPECT_EQ(ref.context_tokens.size(), 160u);
  EXPECT_EQ(ref.continuation_tokens.size(), 24u);
  EXPECT_EQ(ref.cache.shape().tokens, 159);  // the last context token is fed, not cached
  EXPECT_GT(ref.ppl, 1.0);
  const auto r = ev.evaluate(ref, codec::CodecConfig{"fp16", {}});
  EXPECT_EQ(r.max_abs_error, 0.0);
  EXPECT_EQ(r.delta_ppl_pct, 0.0);
  EXPECT_EQ(r.top1_agreement, 1.0);
  EXPECT_NEAR(r.kl, 0.0, 1e-9);
  EXPECT_EQ(r.greedy_match, 1.0);
  EXPECT_NEAR(r.ratio_vs_fp16, 1.0, 0.05);
  // The reference is computed once and reused.
  EXPECT_EQ(&ev.reference(genesis(), "kjv-genesis"), &ref);
}

TEST_F(EvalQuality, CoarserSettingsAreMonotonicallyWorse) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  Evaluator ev(*model_, short_config());
  const auto& ref = ev.reference(genesis(), "kjv-genesis");
  // Finest to coarsest.
  const std::vector<codec::CodecConfig> ladder = {{"fp16", {}}, {"int8", {}}, {"int4", {}}};
  const auto results = run_sweep(ev, ref, ladder);
  ASSERT_EQ(results.size(), 3u);
  for (std::size_t i = 1; i < results.size(); ++i) {
    SCOPED_TRACE(results[i].config.codec);
    EXPECT_LT(results[i].bits_per_element, results[i - 1].bits_per_element);
    EXPECT_GT(results[i].max_abs_error, results[i - 1].max_abs_error);
    EXPECT_GT(results[i].kl, results[i - 1].kl);
    EXPECT_GE(std::abs(results[i].delta_ppl_pct), std::abs(results[i - 1].delta_ppl_pct));
    EXPECT_LE(results[i].top1_agreement, results[i - 1].top1_agreement);
  }
}

TEST_F(EvalQuality, RetrievalTaskOutcomeUnderLosslessCodecEqualsReference) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  Evaluator ev(*model_, short_config());
  Task t{"tiny-passkey", "passkey",
         "Remember this. The pass key is 48213. Remember it. 48213 is the pass key. The grass is green.",
         "\nWhat is the pass key? The pass key is", "48213"};
  const auto refs = ev.make_task_references({t});
  ASSERT_EQ(refs.size(), 1u);
  const auto& ref = ev.reference(genesis(), "kjv-genesis");
  const auto r = ev.evaluate(ref, codec::CodecConfig{"fp16", {}}, {&refs});
  ASSERT_EQ(r.tasks.size(), 1u);
  EXPECT_EQ(r.tasks[0].output, refs[0].output);
  EXPECT_EQ(r.tasks[0].correct, refs[0].correct);
  EXPECT_EQ(r.task_accuracy, r.task_accuracy_ref);
}

}  // namespace
}  // namespace kvscope::eval
