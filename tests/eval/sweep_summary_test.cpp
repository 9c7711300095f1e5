// SPDX-License-Identifier: Apache-2.0
// The rate-distortion summary of `kvscope-cli sweep` (core/eval/report.h) and
// the dataset split it can run on.
#include <gtest/gtest.h>

#include <algorithm>

#include "kvscope/common/error.h"
#include "kvscope/eval/dataset.h"
#include "kvscope/eval/report.h"

namespace kvscope::eval {
namespace {

QualityResult result(const std::string& ctx, const std::string& bins, double bits, double kl, double top1) {
  QualityResult r;
  r.context = ctx;
  r.config = {"cachegen", {{"key_bins", bins}}};
  r.bits_per_element = bits;
  r.ratio_vs_int8 = 8.0 / bits;
  r.kl = kl;
  r.top1_agreement = top1;
  r.size.elements = 1000;
  r.size.header_bytes = 10;
  r.size.table_bytes = 20;
  r.size.step_bytes = 30;
  r.size.payload_bytes = std::size_t(bits * 1000 / 8) - 60;
  return r;
}

TEST(SweepSummary, MeansPerConfigurationAndTheParetoFront) {
  const std::vector<QualityResult> rs = {
      result("a", "16", 2.0, 0.04, 0.90), result("b", "16", 2.2, 0.06, 0.80),  // mean 2.1 bits, KL 0.05
      result("a", "24", 2.6, 0.02, 0.95), result("b", "24", 2.8, 0.02, 0.97),  // 2.7, 0.02
      result("a", "20", 2.8, 0.03, 0.90), result("b", "20", 3.0, 0.05, 0.90),  // 2.9, 0.04: dominated
  };
  const auto points = summarize_sweep(rs);
  ASSERT_EQ(points.size(), 3u);
  EXPECT_EQ(points[0].contexts, 2);
  EXPECT_NEAR(points[0].bits_per_element, 2.1, 1e-12);
  EXPECT_NEAR(points[0].kl, 0.05, 1e-12);
  EXPECT_NEAR(points[0].worst_kl, 0.06, 1e-12);
  EXPECT_NEAR(points[0].worst_top1, 0.80, 1e-12);
  EXPECT_NEAR(points[0].step_bpe, 0.24, 1e-12);
  EXPECT_TRUE(points[0].pareto);
  EXPECT_TRUE(points[1].pareto);
  EXPECT_FALSE(points[2].pareto);
  const std::string csv = sweep_points_csv(points);
  EXPECT_EQ(
      csv.substr(0, csv.find('\n')),
      "codec,params,contexts,bits_per_element,ratio_vs_int8,header_bpe,table_bpe,step_bpe,payload_bpe,kl,"
      "worst_kl,top1_agreement,worst_top1,delta_ppl_pct,greedy_match,pareto");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
}

TEST(SweepSummary, ResultsCsvCarriesTheSizeBreakdown) {
  const std::string csv = results_csv({result("a", "16", 2.0, 0.04, 0.9)});
  const std::string header = csv.substr(0, csv.find('\n'));
  EXPECT_NE(header.find("header_bytes,table_bytes,step_bytes,payload_bytes"), std::string::npos);
  EXPECT_NE(csv.find(",10,20,30,190\n"), std::string::npos) << csv;
}

TEST(DatasetSplit, TuneAndHeldOutAreDisjointContextsOfTheIndex) {
  const auto tune = load_dataset_split("tune");
  const auto held = load_dataset_split("held-out");
  EXPECT_EQ(tune.size(), 3u);
  EXPECT_EQ(held.size(), 4u);
  const auto idx = load_dataset_index();
  for (const auto& id : tune) {
    EXPECT_NE(idx.find_context(id), nullptr) << id;
    EXPECT_EQ(std::count(held.begin(), held.end(), id), 0) << id;
  }
  for (const auto& id : held) EXPECT_NE(idx.find_context(id), nullptr) << id;
  try {
    load_dataset_split("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("held-out"), std::string::npos);
  }
}

}  // namespace
}  // namespace kvscope::eval
