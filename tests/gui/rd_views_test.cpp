// SPDX-License-Identifier: GPL-3.0-or-later
// The views behind cachegen's defaults (issue #14): Layer Sensitivity (load a
// measurement, plan bins under a budget, hand them to Codec Tuning) and the
// pipeline view explaining sinks. The attention measurement needs the model:
// tests/eval/sensitivity_model_test.cpp covers model::Model::attention_to_cache.
#include <QDockWidget>
#include <QPushButton>

#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/calibration_builder.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/paths.h"
#include "window_fixture.h"
#if KVSCOPE_GUI_HAVE_EVAL
#include "job_runner.h"
#include "pipeline_panel.h"
#include "plot_widget.h"
#include "quality_service.h"
#include "rd_panel.h"
#include "sensitivity_panel.h"
#endif

namespace kvscope::gui {
namespace {

class RdViews : public WindowFixture {};

#if KVSCOPE_GUI_HAVE_EVAL
// A sensitivity for the fixture's 4-layer cache, key layer 3 the most
// sensitive (`last_key_kl`).
codec::LayerSensitivity fourLayerSensitivity(double last_key_kl, const std::string& context) {
  codec::LayerSensitivity s;
  s.layers = 4;
  s.base_bins = 32;
  s.coarse_bins = 8;
  s.key_kl = {0.001, 0.002, 0.004, last_key_kl};
  s.value_kl = {0.05, 0.002, 0.001, 0.001};
  s.contexts = {context};
  return s;
}

TEST_F(RdViews, SensitivityPlansPerLayerBinsIntoCodecTuning) {
  ASSERT_TRUE(loadSyntheticCache());
  auto* panel = window().findChild<SensitivityPanel*>(QStringLiteral("sensitivityPanel"));
  ASSERT_NE(panel, nullptr);
  const auto s = fourLayerSensitivity(0.3, "synthetic");
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

// The sensitivity kept in the model's calibration (`kvscope-cli calibrate
// --sensitivity`) is drawn as soon as a cache of that model is open.
TEST_F(RdViews, SensitivityComesFromTheModelsCalibration) {
  const auto s = fourLayerSensitivity(0.25, "kept");
  auto table_cache = codec::synthetic_cache(kv::CacheShape{4, 2, 64, 16}, 5);
  table_cache.info.model_name = "synthetic";  // the fixture's cache's model
  codec::calibration::CalibrationSources sources;
  sources.table_caches = {&table_cache, 1};
  sources.sensitivity = &s;
  const auto dir = path(QStringLiteral("calibration"));
  codec::calibration::save(
      codec::calibration::serialize(codec::calibration::build_calibration_file(sources).file),
      dir.toStdString());
  qputenv("KVSCOPE_CALIBRATION_DIR", dir.toUtf8());
  auto* panel = window().findChild<SensitivityPanel*>(QStringLiteral("sensitivityPanel"));
  ASSERT_NE(panel, nullptr);
  ASSERT_TRUE(loadSyntheticCache());
  const bool shown = QTest::qWaitFor([&] { return panel->sensitivity().has_value(); }, 20000);
  qunsetenv("KVSCOPE_CALIBRATION_DIR");
  ASSERT_TRUE(shown) << "the calibration's sensitivity was not shown";
  EXPECT_EQ(panel->sensitivity()->key_kl[3], 0.25);
  EXPECT_EQ(panel->sensitivity()->contexts, std::vector<std::string>{"kept"});
  // A cache whose model has no calibration with one: the calibration's is
  // not left standing for it.
  qputenv("KVSCOPE_CALIBRATION_DIR", path(QStringLiteral("empty-calibration")).toUtf8());
  ASSERT_TRUE(loadSyntheticCache());
  const bool cleared = QTest::qWaitFor([&] { return !panel->sensitivity().has_value(); }, 20000);
  qunsetenv("KVSCOPE_CALIBRATION_DIR");
  EXPECT_TRUE(cleared);
}

// Regression (issue 21): the rate-distortion view drew the labels of nearby
// points over each other. Points as the quality service reports them (made up
// here: the view, not the measurement, is under test), crowded together.
TEST_F(RdViews, RegressionRdPointLabelsOverlapped) {
  ASSERT_TRUE(loadSyntheticCache());
  MainWindow& w = window();
  w.resize(1600, 1000);
  w.findChild<QDockWidget*>(QStringLiteral("rdDock"))->raise();
  RdPanel* rd = w.rdPanel();
  rd->measureDefaults();
  const auto shape = w.session()->cache()->shape();
  int i = 0;
  for (const codec::Codec* c : codec::all_codecs()) {
    eval::QualityResult r;
    r.config = QualityService::complete({c->name(), {}}, &shape);
    r.bits_per_element = 2.0 + 0.02 * i;  // a few pixels apart
    r.kl = 0.010 * (1.0 + 0.03 * i);
    ++i;
    emit w.qualityService()->sweepPoint(r);
  }
  ASSERT_GE(rd->points().size(), 4u);
  ASSERT_TRUE(QTest::qWaitForWindowExposed(rd->plot()));
  rd->plot()->replot(QCustomPlot::rpImmediateRefresh);
  std::vector<QRectF> shown;
  for (QCPItemText* t : rd->pointLabels()) {
    if (!t->visible()) continue;
    const QMargins pad = t->padding();  // the gap to its point
    const QRectF r = QRectF(t->topLeft->pixelPosition(), t->bottomRight->pixelPosition())
                         .adjusted(pad.left(), pad.top(), -pad.right(), -pad.bottom());
    for (const QRectF& o : shown)
      EXPECT_FALSE(o.intersects(r)) << t->text().toStdString() << " overlaps another label";
    EXPECT_TRUE(rd->plot()->axisRect()->rect().contains(r.toRect())) << t->text().toStdString();
    shown.push_back(r);
  }
  EXPECT_GE(shown.size(), 2u) << "labels hidden that had room";
}

TEST_F(RdViews, PipelineViewExplainsASinkToken) {
  ASSERT_TRUE(loadSyntheticCache());
  auto* pipeline = window().findChild<PipelinePanel*>();
  ASSERT_NE(pipeline, nullptr);
  ASSERT_TRUE(window().codecPanel()->setConfig({"cachegen", {{"sinks", "1"}}}));
  pipeline->setSelection(0, 0, 0, 0, 4);
  EXPECT_NE(pipeline->explanation().indexOf(QStringLiteral("sink")), -1)
      << pipeline->explanation().toStdString();
  pipeline->setSelection(0, 0, 3, 0, 4);
  EXPECT_EQ(pipeline->explanation().indexOf(QStringLiteral("Attention sink")), -1);
}
#endif

}  // namespace
}  // namespace kvscope::gui
