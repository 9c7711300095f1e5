// SPDX-License-Identifier: GPL-3.0-or-later
// The transform spectrum view in the real MainWindow: it draws the component
// variances and the bits each component gets, and follows the codec panel's
// transform settings (a smaller budget codes fewer components).
#include "window_fixture.h"

#if KVSCOPE_GUI_HAVE_CODECS
#include <QDockWidget>

#include "job_runner.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/channel_weighting.h"
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
  // They ask for query weighting, but no calibration gives channel weights: the view says it is off.
  EXPECT_TRUE(panel->summary().contains(QStringLiteral("Query weighting is off")))
      << panel->summary().toStdString();

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
  // Values are coded with token gains by default, and the view says what its variances then are.
  EXPECT_EQ(high->value_gain, 1.0);
  EXPECT_TRUE(panel->summary().contains(QStringLiteral("Value token gains")))
      << panel->summary().toStdString();
  panel->setSelection(3, 0, 0);
  EXPECT_FALSE(panel->summary().contains(QStringLiteral("Value token gains"))) << "keys have no gains";
}

// The calibration file's section names.
std::vector<std::string> sectionsOf(const QString& file) {
  std::vector<std::string> names;
  for (const auto& [name, payload] : codec::calibration::load(file.toStdString()).sections)
    names.push_back(name);
  return names;
}

// Gives the session's synthetic cache channel weights shaped as a prefill of
// its 4 layers x 32 channels would report them: keys 1 + rise * (c % 8),
// rising within each 16-dim head (both dimensions of a RoPE pair equal),
// values all 1.
std::shared_ptr<MeasuredChannelWeights> giveMeasuredWeights(MainWindow& window, float rise) {
  auto weights = std::make_shared<MeasuredChannelWeights>();
  for (int l = 0; l < 4; ++l)
    for (int c = 0; c < 32; ++c) {
      weights->key.push_back(1.0f + rise * float(c % 8));
      weights->value.push_back(1.0f);
    }
  window.session()->setCache(window.session()->cache(), QStringLiteral("synthetic"), weights);
  return weights;
}

// A cache opened from a file has no measured channel weights: the file holds
// the bases and cachegen's tables (at cachegen's defaults), no weighting; a
// codec panel showing another codec than cachegen switches to transform.
TEST_F(SpectrumTest, CalibratesFromTheCurrentCacheIntoTheCodecPanel) {
  qputenv("KVSCOPE_CALIBRATION_DIR", path(QStringLiteral("calibration")).toUtf8());
  MainWindow& window = this->window();
  auto* panel = window.findChild<SpectrumPanel*>();
  ASSERT_NE(panel, nullptr);
  ASSERT_TRUE(loadSyntheticCache());
  EXPECT_EQ(window.session()->channelWeights(), nullptr);
  CodecPanel* codec = window.codecPanel();
  ASSERT_TRUE(codec->setConfig({"int8", {}}));
  ASSERT_TRUE(QTest::qWaitFor([&] { return codec->lastResult() != nullptr; }, 30000));
  QSignalSpy encoded(codec, &CodecPanel::encoded);
  QSignalSpy calibrated(panel, &SpectrumPanel::calibrated);
  panel->calibrateFromCache();
  ASSERT_TRUE(calibrated.wait(30000));
  const QString file = calibrated.at(0).at(0).toString();
  EXPECT_TRUE(file.startsWith(path(QStringLiteral("calibration")))) << file.toStdString();
  EXPECT_EQ(sectionsOf(file), (std::vector<std::string>{"cachegen.tables", "transform.basis"}));
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

// With the channel weights a prefill measured, the file also holds cachegen's
// channel weighting, its tables are counted weighted at the codec panel's
// settings, and cachegen (shown) takes both from it: a weighted stream
// (channel_weighting=calibrated in its header) that ships no tables and decodes.
TEST_F(SpectrumTest, CalibrationGivesCachegenItsChannelWeightingAndTables) {
  qputenv("KVSCOPE_CALIBRATION_DIR", path(QStringLiteral("calibration")).toUtf8());
  MainWindow& window = this->window();
  auto* panel = window.findChild<SpectrumPanel*>();
  ASSERT_NE(panel, nullptr);
  ASSERT_TRUE(loadSyntheticCache());
  const auto weights = giveMeasuredWeights(window, 1.0f);
  CodecPanel* codec = window.codecPanel();
  ASSERT_EQ(codec->config().codec, "cachegen");
  ASSERT_TRUE(QTest::qWaitFor([&] { return codec->lastResult() != nullptr; }, 30000));
  EXPECT_EQ(codec::inspect_stream(codec->lastResult()->bytes).params.count("channel_weighting"),
            0u);  // nothing calibrated yet
  QSignalSpy calibrated(panel, &SpectrumPanel::calibrated);
  panel->calibrateFromCache();
  ASSERT_TRUE(calibrated.wait(30000));
  const QString file = calibrated.at(0).at(0).toString();
  EXPECT_EQ(sectionsOf(file),
            (std::vector<std::string>{"cachegen.channel-weighting", "cachegen.tables", "transform.basis"}));
  const auto cal = codec::calibration::load(file.toStdString());
  const auto* section = cal.find(codec::calibration::kChannelWeightingSection);
  ASSERT_NE(section, nullptr);
  const auto w = codec::calibration::parse_channel_weighting(*section, file.toStdString());
  EXPECT_EQ(w.key_power, 0.5);
  EXPECT_EQ(w.value_power, 0.0);
  EXPECT_EQ(w.key_weight, weights->key);
  const auto cfg = codec->config();
  EXPECT_EQ(cfg.codec, "cachegen");
  EXPECT_EQ(cfg.params.at("profile"), file.toStdString());
  // The panel re-encodes with the file: weighted, the file's tables (none shipped).
  ASSERT_TRUE(QTest::qWaitFor(
      [&] {
        const auto r = codec->lastResult();
        return r && codec::inspect_stream(r->bytes).params.count("channel_weighting") == 1;
      },
      30000));
  const auto stream = codec->lastResult()->bytes;
  for (const auto& s : codec::inspect_stream(stream).sections) EXPECT_EQ(s.kind, codec::SectionKind::Chunk);
  EXPECT_NO_THROW(codec::decode(stream));
  // Regression: retuning the bins after calibrating failed to encode (the
  // file's tables fit only the bins they were counted at). Now the stream
  // ships its own tables and keeps the file's weighting.
  ASSERT_TRUE(codec->setParam(QStringLiteral("key_bins"), QStringLiteral("20")));
  ASSERT_TRUE(QTest::qWaitFor(
      [&] {
        const auto r = codec->lastResult();
        if (!r) return false;
        const auto info = codec::inspect_stream(r->bytes);
        return info.params.count("channel_weighting") == 1 &&
               info.sections.front().kind == codec::SectionKind::Table;
      },
      30000))
      << codec->sizeReadout().toStdString();
  qunsetenv("KVSCOPE_CALIBRATION_DIR");
}

// transform with a calibration that holds measured channel weights codes
// keys query-weighted (layout version 2), and the Spectrum view draws each
// component's own water level and says why the steps differ.
TEST_F(SpectrumTest, TransformTakesTheQueryWeightingFromTheCalibration) {
  qputenv("KVSCOPE_CALIBRATION_DIR", path(QStringLiteral("calibration")).toUtf8());
  MainWindow& window = this->window();
  auto* panel = window.findChild<SpectrumPanel*>();
  ASSERT_NE(panel, nullptr);
  window.findChild<QDockWidget*>(QStringLiteral("spectrumDock"))->raise();
  ASSERT_TRUE(loadSyntheticCache());
  giveMeasuredWeights(window, 4.0f);
  QSignalSpy calibrated(panel, &SpectrumPanel::calibrated);
  panel->calibrateFromCache();
  ASSERT_TRUE(calibrated.wait(30000));
  const QString file = calibrated.at(0).at(0).toString();
  CodecPanel* codec = window.codecPanel();
  QSignalSpy planned(panel, &SpectrumPanel::planned);
  ASSERT_TRUE(codec->setConfig({"transform", {{"calibration", file.toStdString()}, {"bits", "3"}}}));
  ASSERT_TRUE(QTest::qWaitFor(
      [&] {
        const auto r = codec->lastResult();
        return r && codec::inspect_stream(r->bytes).codec == "transform";
      },
      30000));
  const auto info = codec::inspect_stream(codec->lastResult()->bytes);
  EXPECT_EQ(info.codec_version, 3);  // query weighting (2) and the default value token gains (3)
  EXPECT_EQ(codec::stream_params(info).at("key_weighting"), "1");
  ASSERT_TRUE(
      QTest::qWaitFor([&] { return panel->summary().contains(QStringLiteral("Query weighting")); }, 30000))
      << panel->summary().toStdString();
  EXPECT_FALSE(panel->summary().contains(QStringLiteral("is off"))) << panel->summary().toStdString();
  panel->setSelection(1, 0, 0);  // layer 1 keys: weighted
  const auto* water = panel->spectrumPlot()->graph(2);
  ASSERT_EQ(water->dataCount(), 32);
  double lo = 1e300, hi = 0;
  for (auto it = water->data()->constBegin(); it != water->data()->constEnd(); ++it) {
    lo = std::min(lo, it->value);
    hi = std::max(hi, it->value);
  }
  EXPECT_GT(hi, 1.5 * lo) << "one water level for every component";
  panel->setSelection(1, 1, 0);  // values: unweighted (value_weighting 0), one level
  EXPECT_FALSE(panel->summary().contains(QStringLiteral("Query weighting")))
      << panel->summary().toStdString();
  qunsetenv("KVSCOPE_CALIBRATION_DIR");
}

}  // namespace
}  // namespace kvscope::gui
#endif
