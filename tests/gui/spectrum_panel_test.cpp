// SPDX-License-Identifier: GPL-3.0-or-later
// The transform spectrum view in the real MainWindow: it draws the component
// variances and the bits each component gets, and follows the codec panel's
// transform settings (a smaller budget codes fewer components).
#include "window_fixture.h"

#if KVSCOPE_GUI_HAVE_CODECS
#include <QDockWidget>

#include "job_runner.h"
#include "kvscope/codec/bitstream.h"
#include "plot_widget.h"
#include "spectrum_panel.h"

namespace kvscope::gui {
namespace {

using SpectrumTest = WindowFixture;

int coded_components(const codec::transform::TransformPlan& plan) {
  int n = 0;
  for (const auto& g : plan.groups) n += g.coded_components();
  return n;
}

TEST_F(SpectrumTest, DrawsTheSpectrumAndFollowsTheBudget) {
  MainWindow& window = this->window();
  auto* panel = window.findChild<SpectrumPanel*>();
  ASSERT_NE(panel, nullptr);
  // The view plans while on screen (a hidden one waits: lazy_views_test.cpp).
  window.findChild<QDockWidget*>(QStringLiteral("spectrumDock"))->raise();
  ASSERT_TRUE(loadSyntheticCache());
  ASSERT_TRUE(QTest::qWaitFor([panel] { return panel->plan() != nullptr; }, 30000))
      << panel->summary().toStdString();
  // 4 layers x K/V, one basis each (grouping "layer"), 2 heads x 16 dims.
  ASSERT_EQ(panel->plan()->groups.size(), 8u);
  EXPECT_EQ(panel->spectrumPlot()->graph(0)->dataCount(), 32);
  EXPECT_EQ(panel->spectrumPlot()->graph(1)->dataCount(), 32);
  EXPECT_TRUE(panel->summary().contains(QStringLiteral("components"))) << panel->summary().toStdString();
  // Transform's defaults are drawn while the codec panel shows another codec.
  EXPECT_TRUE(panel->summary().contains(QStringLiteral("default"))) << panel->summary().toStdString();

  CodecPanel* codec = window.codecPanel();
  auto plan_for = [&](const QString& bits) -> std::shared_ptr<const codec::transform::TransformPlan> {
    QSignalSpy planned(panel, &SpectrumPanel::planned);
    codec->setConfig({"transform", {{"bits", bits.toStdString()}}});
    if (!planned.wait(30000)) return nullptr;
    return panel->plan();
  };
  const auto low = plan_for(QStringLiteral("0.5"));
  const auto high = plan_for(QStringLiteral("6"));
  ASSERT_TRUE(low && high);
  EXPECT_LT(coded_components(*low), coded_components(*high));
  EXPECT_LT(low->bits_per_element, high->bits_per_element);
  EXPECT_FALSE(panel->summary().contains(QStringLiteral("default")));
  panel->setSelection(3, 1, 0);
  EXPECT_TRUE(panel->summary().contains(QStringLiteral("Layer 3 values"))) << panel->summary().toStdString();
}

TEST_F(SpectrumTest, CalibratesFromTheCurrentCacheIntoTheCodecPanel) {
  qputenv("KVSCOPE_CALIBRATION_DIR", path(QStringLiteral("calibration")).toUtf8());
  MainWindow& window = this->window();
  auto* panel = window.findChild<SpectrumPanel*>();
  ASSERT_NE(panel, nullptr);
  ASSERT_TRUE(loadSyntheticCache());
  CodecPanel* codec = window.codecPanel();
  ASSERT_TRUE(QTest::qWaitFor([&] { return codec->lastResult() != nullptr; }, 30000));
  QSignalSpy encoded(codec, &CodecPanel::encoded);
  QSignalSpy calibrated(panel, &SpectrumPanel::calibrated);
  panel->calibrateFromCache();
  ASSERT_TRUE(calibrated.wait(30000));
  const QString file = calibrated.at(0).at(0).toString();
  EXPECT_TRUE(file.startsWith(path(QStringLiteral("calibration")))) << file.toStdString();
  EXPECT_TRUE(QFile::exists(file));
  const auto cfg = codec->config();
  EXPECT_EQ(cfg.codec, "transform");
  EXPECT_EQ(cfg.params.at("calibration"), file.toStdString());
  EXPECT_EQ(cfg.params.at("basis"), "calibration");
  // The codec panel encodes with the calibrated basis (the stream names it by hash, so it decodes).
  ASSERT_TRUE(encoded.wait(30000));
  const auto stream = codec->lastResult()->bytes;
  EXPECT_EQ(codec::inspect_stream(stream).codec, "transform");
  EXPECT_NO_THROW(codec::decode(stream));
  qunsetenv("KVSCOPE_CALIBRATION_DIR");
}

}  // namespace
}  // namespace kvscope::gui
#endif
