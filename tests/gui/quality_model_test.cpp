// SPDX-License-Identifier: GPL-3.0-or-later
// The window as a tuning instrument, with the default model on the default
// context (label `model`): quality in the loop, the rate-distortion view,
// the teaching stream scenario, token counts and the exported model hash.
// One window (one prefill) is shared by the tests of this file.
#include <gtest/gtest.h>

#include <QComboBox>
#include <QDockWidget>
#include <QFile>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <set>

#include "codec_panel.h"
#include "job_runner.h"
#include "main_window.h"
#include "plot_widget.h"
#include "session.h"
#include "test_model.h"
#if KVSCOPE_GUI_HAVE_EVAL
#include "kvscope/model/model.h"
#include "quality_service.h"
#include "rd_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_STREAM
#include "stream_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_HDF5
#include "kvscope/io/hdf5_container.h"
#endif

namespace kvscope::gui {
namespace {

#if KVSCOPE_GUI_HAVE_EVAL && KVSCOPE_GUI_HAVE_MODEL
class QualityModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!find_default_model()) return;
    MainWindow::Options options;
    options.use_settings = false;
    options.keep_prefills = false;
    options.load_default = true;  // the default model and the default context
    window_ = new MainWindow(options);
    QSignalSpy prefilled(window_, &MainWindow::prefilled);
    window_->show();
    prefilled.wait(300000);
  }
  static void TearDownTestSuite() {
    delete window_;
    window_ = nullptr;
  }
  void SetUp() override {
    KVSCOPE_REQUIRE_DEFAULT_MODEL(model_path);
    model_path_ = model_path;
    ASSERT_NE(window_, nullptr);
    ASSERT_NE(window_->session()->cache(), nullptr) << "the default context did not prefill";
  }
  MainWindow& window() { return *window_; }

  /// The live quality result for `config`, after setting it in the codec panel.
  std::optional<eval::QualityResult> liveQuality(const codec::CodecConfig& config) {
    QualityService* q = window().qualityService();
    std::optional<eval::QualityResult> out;
    QMetaObject::Connection c =
        QObject::connect(q, &QualityService::liveResult, [&](const eval::QualityResult& r) {
          if (r.config.codec == config.codec) out = r;
        });
    window().codecPanel()->setConfig(config);
    (void)QTest::qWaitFor([&] { return out.has_value(); }, 120000);
    QObject::disconnect(c);
    return out;
  }

  static MainWindow* window_;
  std::filesystem::path model_path_;
};
MainWindow* QualityModelTest::window_ = nullptr;

// Regression (issue 21): quality scored 64 tokens with no uncertainty, so
// int4 showed -4.4% perplexity; now int8 and int4 have disjoint KL intervals
// on the default context, shown next to bits/element after each retune.
TEST_F(QualityModelTest, RegressionQualityCouldNotSeparateInt8FromInt4) {
  const auto int8 = liveQuality({"int8", {}});
  ASSERT_TRUE(int8) << "no live quality for int8";
  const auto int4 = liveQuality({"int4", {}});
  ASSERT_TRUE(int4) << "no live quality for int4";
  EXPECT_EQ(int8->continuation_tokens, QualityService::kScoredTokens);
  EXPECT_GT(int8->intervals.resamples, 0);
  EXPECT_LT(int8->intervals.kl.hi, int4->intervals.kl.lo)
      << "int8 KL " << int8->kl << " [" << int8->intervals.kl.lo << ", " << int8->intervals.kl.hi
      << "], int4 KL " << int4->kl << " [" << int4->intervals.kl.lo << ", " << int4->intervals.kl.hi << "]";
  EXPECT_LE(int8->intervals.kl.lo, int8->kl);
  EXPECT_GE(int8->intervals.kl.hi, int8->kl);
  (void)QTest::qWaitFor(
      [&] { return window().codecPanel()->qualityReadout().contains(QStringLiteral("KL")); }, 10000);
  EXPECT_TRUE(window().codecPanel()->qualityReadout().contains(QStringLiteral("[")))
      << window().codecPanel()->qualityReadout().toStdString();
  window().codecPanel()->setConfig({"cachegen", {}});
}

// The rate-distortion view measures every registered codec at its defaults
// (from the registry: a codec added to core/codec appears without changes)
// and a click on a point loads its settings.
TEST_F(QualityModelTest, RateDistortionViewShowsEveryCodecAndLoadsAClickedPoint) {
  RdPanel* rd = window().rdPanel();
  ASSERT_NE(rd, nullptr);
  QSignalSpy finished(window().qualityService(), &QualityService::sweepFinished);
  rd->measureDefaults();
  ASSERT_TRUE(QTest::qWaitFor([&] { return finished.count() > 0; }, 600000));
  std::set<std::string> measured;
  for (const auto& p : rd->points()) measured.insert(p.config.codec);
  for (const codec::Codec* c : codec::all_codecs()) EXPECT_TRUE(measured.count(c->name())) << c->name();
  // Click the int8 point.
  auto* dock = window().findChild<QDockWidget*>(QStringLiteral("rdDock"));
  dock->raise();
  QApplication::processEvents();
  rd->plot()->replot(QCustomPlot::rpImmediateRefresh);
  const eval::QualityResult* int8 = nullptr;
  for (const auto& p : rd->points())
    if (p.config.codec == "int8") int8 = &p;
  ASSERT_NE(int8, nullptr);
  const QPoint at(int(rd->plot()->xAxis->coordToPixel(int8->bits_per_element)),
                  int(rd->plot()->yAxis->coordToPixel(std::max(int8->kl, 1e-6))));
  QTest::mouseClick(rd->plot(), Qt::LeftButton, Qt::NoModifier, at);
  EXPECT_EQ(window().codecPanel()->config().codec, "int8");
  // Exported with every point's settings and intervals.
  QTemporaryDir dir;
  const QString csv = dir.filePath(QStringLiteral("rd.csv"));
  ASSERT_TRUE(rd->exportResults(csv));
  QFile f(csv);
  ASSERT_TRUE(f.open(QIODevice::ReadOnly));
  const QString text = QString::fromUtf8(f.readAll());
  EXPECT_TRUE(text.contains(QStringLiteral("kl_lo")));
  EXPECT_TRUE(text.contains(QStringLiteral("cachegen")));
  window().codecPanel()->setConfig({"cachegen", {}});
}

#if KVSCOPE_GUI_HAVE_STREAM
// Regression (issue 21): on the default scenario adaptive was slower than
// int8, never sent a cachegen level, and no run met the SLO; simulated runs
// with baselines took 12-27 s of wall time (text recompute ran the model).
TEST_F(QualityModelTest, RegressionDefaultScenarioDidNotShowAdaptationMeetingTheSlo) {
  StreamPanel* panel = window().streamPanel();
  ASSERT_TRUE(panel->setScenario(QString::fromLatin1(StreamPanel::kDefaultScenario)));
  panel->setSimulated(true);
  panel->setRunBaselines(true);
  // Regression (CI, this machine's speeds): measured on a loaded 2-core CI
  // runner, the prefill rate charged for the query left too little of the 2 s
  // SLO for any policy (adaptive 2.02 s). The receiver's speeds are pinned to
  // an unloaded 2-core machine's (prefill 250 tokens/s; cachegen decodes 256
  // tokens in 40 ms), so the outcome tests the policy, not the runner's load.
  panel->setRecomputeRate(250);
  panel->setDecodeRate(6400);
  QSignalSpy finished(panel, &StreamPanel::finished);
  QSignalSpy quality(panel, &StreamPanel::qualityAdded);
  panel->run();
  ASSERT_TRUE(QTest::qWaitFor([&] { return finished.count() > 0; }, 120000));
  const auto& reports = panel->reports();
  ASSERT_EQ(reports.size(), 4u);
  const auto& adaptive = reports[0];
  const auto& int8 = reports[2];
  ASSERT_EQ(int8.policy, "int8");
  // Printed on failure: each policy's chunks as its report has them (level,
  // bytes, estimate, arrival, decode: the simulated clock's inputs).
  std::string timeline;
  for (const auto& r : reports)
    timeline += r.policy + ": " + stream::report_to_json(r)["chunks"].dump() + "\n";
  SCOPED_TRACE(timeline);
  EXPECT_TRUE(adaptive.slo_met) << adaptive.ttft_s << " s vs SLO " << adaptive.slo_s;
  EXPECT_FALSE(int8.slo_met) << int8.ttft_s << " s";
  std::set<std::string> levels;
  for (const auto& c : adaptive.chunks) levels.insert(c.level_name);
  EXPECT_TRUE(levels.count("int8")) << "adaptive never sent int8 while the link was fast";
  EXPECT_GE(levels.size(), 2u) << "adaptive never changed level";
  bool cachegen = false;
  for (const auto& l : levels) cachegen = cachegen || l.starts_with("cachegen");
  EXPECT_TRUE(cachegen);
  // Text is charged at the measured prefill rate, not recomputed by the model.
  EXPECT_NE(reports[3].recompute.find("tokens/s"), std::string::npos) << reports[3].recompute;
  // The quality each policy delivered comes next to its delay.
  ASSERT_TRUE(QTest::qWaitFor([&] { return quality.count() >= 4; }, 120000));
}
#endif

// Regression (issue 21): context labels said "~1802 tokens" where the count is 1687.
TEST_F(QualityModelTest, RegressionContextLabelsShowedApproximateTokenCounts) {
  auto* combo = window().findChild<QComboBox*>(QStringLiteral("datasetCombo"));
  ASSERT_NE(combo, nullptr);
  ASSERT_TRUE(QTest::qWaitFor(
      [&] { return combo->itemText(combo->currentIndex()).contains(QStringLiteral("tokens")); }, 60000));
  const QString label = combo->itemText(combo->currentIndex());
  EXPECT_FALSE(label.contains(QLatin1Char('~'))) << label.toStdString();
  EXPECT_TRUE(label.contains(QStringLiteral("(%1 tokens)").arg(window().session()->cache()->shape().tokens)))
      << label.toStdString() << " vs " << window().session()->cache()->shape().tokens;
}

#if KVSCOPE_GUI_HAVE_HDF5
// Regression (issue 21): the model SHA-256 attribute was empty in HDF5 exports.
// Also a regression: importing the file after the model ran hung in fork()
// (OpenBLAS's atfork handler waited for its worker thread for ever; the
// import's check process now starts with _Fork).
TEST_F(QualityModelTest, RegressionHdf5ExportHadAnEmptyModelHash) {
  ASSERT_TRUE(QTest::qWaitFor([&] { return window().codecPanel()->lastResult() != nullptr; }, 60000));
  QTemporaryDir dir;
  const QString h5 = dir.filePath(QStringLiteral("export.h5"));
  QSignalSpy exported(&window(), &MainWindow::exported);
  QSignalSpy errors(&window(), &MainWindow::errorShown);
  window().exportHdf5(h5);
  ASSERT_TRUE(QTest::qWaitFor([&] { return exported.count() > 0 || errors.count() > 0; }, 60000));
  ASSERT_EQ(errors.count(), 0) << errors.at(0).at(1).toString().toStdString();
  const io::Hdf5Contents contents = io::import_hdf5(h5.toStdString());
  EXPECT_EQ(contents.info.model_sha256, model::model_file_sha256(model_path_));
  EXPECT_EQ(contents.info.model_sha256.size(), 64u);
}
#endif
#endif

}  // namespace
}  // namespace kvscope::gui
