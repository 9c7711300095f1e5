// SPDX-License-Identifier: GPL-3.0-or-later
// The views behind cachegen's defaults (issue #14): Layer Sensitivity (load a
// measurement, plan bins under a budget, hand them to Codec Tuning) and the
// pipeline view explaining sinks. The attention measurement needs the model:
// tests/eval/sensitivity_model_test.cpp covers model::Model::attention_to_cache.
#include <QPushButton>

#include "kvscope/codec/bin_plan.h"
#include "kvscope/common/paths.h"
#include "window_fixture.h"
#if KVSCOPE_GUI_HAVE_EVAL
#include "job_runner.h"
#include "pipeline_panel.h"
#include "plot_widget.h"
#include "sensitivity_panel.h"
#endif

namespace kvscope::gui {
namespace {

class RdViews : public WindowFixture {};

#if KVSCOPE_GUI_HAVE_EVAL
TEST_F(RdViews, SensitivityPlansPerLayerBinsIntoCodecTuning) {
  ASSERT_TRUE(loadSyntheticCache());
  auto* panel = window().findChild<SensitivityPanel*>(QStringLiteral("sensitivityPanel"));
  ASSERT_NE(panel, nullptr);
  codec::LayerSensitivity s;
  s.layers = 4;
  s.base_bins = 32;
  s.coarse_bins = 8;
  s.key_kl = {0.001, 0.002, 0.004, 0.3};
  s.value_kl = {0.05, 0.002, 0.001, 0.001};
  s.contexts = {"synthetic"};
  const auto bytes = codec::serialize_sensitivity(s);
  const QString file = writeFile(QStringLiteral("s.kvssens"),
                                 QByteArray(reinterpret_cast<const char*>(bytes.data()), int(bytes.size())));
  ASSERT_TRUE(panel->loadFile(file));
  ASSERT_TRUE(panel->sensitivity().has_value());
  EXPECT_EQ(panel->plot()->plottableCount(), 2);
  // A corrupt file is refused with a message, keeping the loaded one.
  EXPECT_FALSE(panel->loadFile(writeFile(QStringLiteral("bad.kvssens"), QByteArray("junk"))));
  EXPECT_EQ(panel->sensitivity()->key_kl[3], 0.3);

  QSignalSpy planned(panel, &SensitivityPanel::planned);
  panel->plan();
  ASSERT_TRUE(planned.wait(20000)) << "no plan";
  const auto config = window().codecPanel()->config();
  EXPECT_EQ(config.codec, "cachegen");
  ASSERT_TRUE(config.params.count("key_bins"));
  const std::string kb = config.params.at("key_bins");
  EXPECT_EQ(std::count(kb.begin(), kb.end(), ','), 3) << kb;  // one entry per layer
  // The most sensitive key layer (3) gets the most bins.
  std::vector<int> bins;
  for (std::size_t a = 0, b; a <= kb.size(); a = b + 1) {
    b = kb.find(',', a);
    if (b == std::string::npos) b = kb.size();
    bins.push_back(std::stoi(kb.substr(a, b - a)));
  }
  EXPECT_EQ(*std::max_element(bins.begin(), bins.end()), bins[3]);
}

TEST_F(RdViews, PipelineViewExplainsASinkToken) {
  ASSERT_TRUE(loadSyntheticCache());
  auto* pipeline = window().findChild<PipelinePanel*>();
  ASSERT_NE(pipeline, nullptr);
  ASSERT_TRUE(window().codecPanel()->setConfig({"cachegen", {{"sinks", "1"}}}));
  pipeline->setSelection(0, 0, 0, 0, 4);
  EXPECT_NE(pipeline->explanation().indexOf(QStringLiteral("sink")), -1) << pipeline->explanation().toStdString();
  pipeline->setSelection(0, 0, 3, 0, 4);
  EXPECT_EQ(pipeline->explanation().indexOf(QStringLiteral("Attention sink")), -1);
}
#endif

}  // namespace
}  // namespace kvscope::gui
