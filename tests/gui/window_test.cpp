// SPDX-License-Identifier: GPL-3.0-or-later
// Drives the real MainWindow without a model: raw caches, errors, workspace, layout.
#include <QCheckBox>
#include <QDockWidget>

#include "distributions_panel.h"
#include "job_runner.h"
#include "plot_checks.h"
#include "plot_widget.h"
#include "window_fixture.h"

namespace kvscope::gui {
namespace {

using WindowTest = WindowFixture;

TEST_F(WindowTest, BadCacheFileShowsErrorDialogNamingTheFile) {
  MainWindow& window = this->window();
  const QString bad =
      writeFile(QStringLiteral("broken.safetensors"), QByteArray("\x05\x00\x00\x00\x00\x00\x00\x00{bad", 12));
  QSignalSpy errors(&window, &MainWindow::errorShown);
  window.openPath(bad);
  ASSERT_TRUE(errors.wait(10000));
  EXPECT_TRUE(errors.at(0).at(1).toString().contains(QStringLiteral("broken.safetensors")))
      << errors.at(0).at(1).toString().toStdString();
  ASSERT_NE(window.lastErrorBox(), nullptr);
  EXPECT_TRUE(window.lastErrorBox()->isVisible());
  EXPECT_EQ(window.session()->cache(), nullptr);
  window.lastErrorBox()->accept();
}

TEST_F(WindowTest, MissingTextAndBadWorkspaceAreErrors) {
  MainWindow& window = this->window();
  QSignalSpy errors(&window, &MainWindow::errorShown);
  window.openTextFile(path(QStringLiteral("nope.txt")));
  ASSERT_EQ(errors.count(), 1);
  EXPECT_TRUE(errors.at(0).at(1).toString().contains(QStringLiteral("nope.txt")));
  const QString ws = writeFile(QStringLiteral("bad.kvscope"), "{ not json");
  EXPECT_FALSE(window.loadWorkspace(ws));
  ASSERT_EQ(errors.count(), 2);
  EXPECT_TRUE(errors.at(1).at(1).toString().contains(QStringLiteral("bad.kvscope")));
}

TEST_F(WindowTest, RawCacheFillsDistributions) {
  MainWindow& window = this->window();
  ASSERT_TRUE(loadSyntheticCache());
  ASSERT_NE(window.session()->cache(), nullptr);
  EXPECT_EQ(window.session()->cache()->shape().tokens, 64);
  DistributionsPanel* dist = window.distributionsPanel();
  ASSERT_TRUE(QTest::qWaitFor([dist] { return dist->stats() != nullptr; }, 20000));
  // Three overlaid histograms (raw, delta to anchor, delta to previous) with data.
  ASSERT_EQ(dist->histogramPlot()->graphCount(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_GT(dist->histogramPlot()->graph(i)->dataCount(), 0) << i;
  // Token locality: deltas are narrower than raw values.
  const auto& t = dist->stats()->tensor(0, kv::Kind::Key);
  EXPECT_LT(t.moments[2].std, t.moments[0].std);
  // The outlier channel (dim 3 of each head) is found by core stats.
  EXPECT_FALSE(t.outlier_channels.empty());
  EXPECT_GT(dist->summaryPlot()->plottableCount(), 0);
  // Heatmap shows tokens x dims of the selected head.
  dist->setSelection(1, 1, 1);
  const auto* map = qobject_cast<QCPColorMap*>(dist->heatmapPlot()->plottable(0));
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->data()->keySize(), 64);
  EXPECT_EQ(map->data()->valueSize(), 16);
  EXPECT_FLOAT_EQ(float(map->data()->cell(5, 3)), window.session()->cache()->at(1, kv::Kind::Value, 1, 5, 3));
}

TEST_F(WindowTest, WorkspaceRoundTrip) {
  const QString ws = path(QStringLiteral("w.kvscope"));
  window().setContextText(QStringLiteral("greeting"), QStringLiteral("Hello KV cache."), false);
  ASSERT_TRUE(window().saveWorkspace(ws));
  newWindow();
  ASSERT_TRUE(window().loadWorkspace(ws));
  EXPECT_EQ(window().session()->contextName(), QStringLiteral("greeting"));
  EXPECT_EQ(window().session()->contextText(), QStringLiteral("Hello KV cache."));
}

TEST_F(WindowTest, RestoreDefaultLayoutShowsPanelsAgain) {
  MainWindow& window = this->window();
  auto* dock = window.findChild<QDockWidget*>(QStringLiteral("distributionsDock"));
  ASSERT_NE(dock, nullptr);
  dock->hide();
  EXPECT_FALSE(dock->isVisible());
  window.restoreDefaultLayout();
  EXPECT_TRUE(dock->isVisible());
}

}  // namespace
}  // namespace kvscope::gui

#if KVSCOPE_GUI_HAVE_CODECS
#include <QTableWidget>
#include <algorithm>
#include <cmath>

#include "kvscope/codec/codec.h"
#include "kvscope/kv/rope.h"
#include "pipeline_panel.h"

namespace kvscope::gui {
namespace {

using CodecPanelTest = WindowFixture;
using PipelinePanelTest = WindowFixture;

TEST_F(CodecPanelTest, ParameterChangeReencodesWithoutTheModel) {
  CodecPanel* panel = window().codecPanel();
  ASSERT_NE(panel, nullptr);
  const QString first = encodeAfter([&] { window().openCacheFile(syntheticCache()); });
  ASSERT_TRUE(first.contains(QStringLiteral("bits/element"))) << first.toStdString();
  ASSERT_NE(panel->lastResult(), nullptr);
  // Switching codec re-encodes the same cache (no prefill) and changes the size.
  const QString int8 = encodeAfter([&] { ASSERT_TRUE(panel->setConfig({"int8", {}})); });
  ASSERT_FALSE(int8.isEmpty()) << "no encode after switching to int8";
  EXPECT_NEAR(panel->lastResult()->size.bits_per_element(), 8.0, 1.5);
  const QString fp16 = encodeAfter([&] { ASSERT_TRUE(panel->setConfig({"fp16", {}})); });
  ASSERT_FALSE(fp16.isEmpty()) << "no encode after switching to fp16";
  EXPECT_NE(int8, fp16);
  EXPECT_NEAR(panel->lastResult()->size.bits_per_element(), 16.0, 1.5);
  EXPECT_GT(panel->lastUpdateMs(), 0.0);
  // Per-layer size bars: K and V of every layer.
  ASSERT_GE(panel->layerPlot()->plottableCount(), 2);
  EXPECT_EQ(panel->layerPlot()->plottable(0)->interface1D()->dataCount(), 4);
}

// A change of one layer's bins is drawn first from an encode of that layer
// alone, patched into the last exact encode (labelled an estimate), then
// the exact encode replaces it with the same per-layer sizes.
TEST_F(CodecPanelTest, OneLayerBinChangeIsDrawnFirstFromThatLayerAlone) {
  CodecPanel* panel = window().codecPanel();
  ASSERT_FALSE(encodeAfter([&] { window().openCacheFile(syntheticCache()); }).isEmpty());
  QStringList bins = QString::fromStdString(panel->config().params.at("key_bins")).split(QLatin1Char(','));
  ASSERT_EQ(bins.size(), 4) << "one bin count per layer";
  bins[2] = QString::number(bins[2].toInt() * 2);
  QSignalSpy estimated(panel, &CodecPanel::estimated);
  QString estimate;
  QObject::connect(panel, &CodecPanel::estimated, panel, [&] { estimate = panel->sizeReadout(); });
  ASSERT_FALSE(encodeAfter([&] {
                 panel->setParam(QStringLiteral("key_bins"), bins.join(QLatin1Char(',')));
               }).isEmpty());
  ASSERT_EQ(estimated.count(), 1);
  EXPECT_TRUE(estimate.contains(QStringLiteral("layer 2 re-encoded"))) << estimate.toStdString();
  EXPECT_TRUE(estimate.contains(QStringLiteral("estimate"))) << estimate.toStdString();
  EXPECT_FALSE(panel->sizeReadout().contains(QStringLiteral("estimate"))) << "the exact size replaces it";
  // Back to the settings of an exact encode: shown again without a first estimate.
  bins[2] = QString::number(bins[2].toInt() / 2);
  ASSERT_FALSE(encodeAfter([&] {
                 panel->setParam(QStringLiteral("key_bins"), bins.join(QLatin1Char(',')));
               }).isEmpty());
  EXPECT_EQ(estimated.count(), 1);
}

TEST_F(CodecPanelTest, ChangingABinCountUpdatesTheSizeReadout) {
  CodecPanel* panel = window().codecPanel();
  ASSERT_NE(panel, nullptr);
  const QString first = encodeAfter([&] { window().openCacheFile(syntheticCache()); });
  ASSERT_FALSE(first.isEmpty());
  ASSERT_EQ(panel->config().codec, "cachegen");  // the default codec
  ASSERT_NE(panel->lastStages(), nullptr);
  const double before = panel->lastResult()->size.bits_per_element();
  // Coarser key bins in the first layer group: fewer bits, new readout.
  QStringList bins = QString::fromStdString(panel->config().params.at("key_bins")).split(QLatin1Char(','));
  ASSERT_FALSE(bins.isEmpty());
  bins[0] = QStringLiteral("4");
  const QString after = encodeAfter(
      [&] { ASSERT_TRUE(panel->setParam(QStringLiteral("key_bins"), bins.join(QLatin1Char(',')))); });
  ASSERT_FALSE(after.isEmpty()) << "no re-encode after the bin change";
  EXPECT_NE(first, after);
  EXPECT_LT(panel->lastResult()->size.bits_per_element(), before);
  EXPECT_EQ(panel->config().params.at("key_bins").substr(0, 2), "4,");
  // Waterfall: fp16, int8, quantized, raw entropy, delta entropy, payload, coded.
  EXPECT_EQ(panel->waterfallPlot()->plottable(0)->interface1D()->dataCount(), 7);
}

// Issue 8: the heatmap's token axis and the stage waterfall's labels overlapped
// (docs/screenshots); at a small and a large window neither does.
TEST_F(CodecPanelTest, HeatmapAndWaterfallTickLabelsNeverOverlap) {
  ASSERT_FALSE(encodeAfter([&] { window().openCacheFile(syntheticCache()); }).isEmpty());
  DistributionsPanel* dist = window().distributionsPanel();
  ASSERT_TRUE(QTest::qWaitFor([dist] { return dist->stats() != nullptr; }, 20000));
  for (QSize size : {QSize(900, 600), QSize(2400, 1500)}) {
    window().resize(size);
    QTest::qWait(20);
    for (PlotWidget* plot : {dist->heatmapPlot(), window().codecPanel()->waterfallPlot()}) {
      plot->replot(QCustomPlot::rpImmediateRefresh);
      for (QCPAxis* axis : {plot->xAxis, plot->yAxis}) {
        EXPECT_EQ(tickLabelOverlap(axis), "")
            << plot->objectName().toStdString() << " at " << plot->width() << "x" << plot->height();
        EXPECT_GE(visibleTicks(axis), 1) << plot->objectName().toStdString();
      }
    }
    EXPECT_EQ(visibleTicks(window().codecPanel()->waterfallPlot()->yAxis), 7)
        << "every stage keeps its label";
  }
}

// The pipeline view traces the codec panel's current settings and agrees
// with the real decoder on the encoded object.
TEST_F(PipelinePanelTest, TracesOneTokenThroughTheCurrentCachegenSettings) {
  CodecPanel* codec = window().codecPanel();
  PipelinePanel* pipe = window().pipelinePanel();
  ASSERT_NE(pipe, nullptr);
  ASSERT_FALSE(encodeAfter([&] { window().openCacheFile(syntheticCache()); }).isEmpty());
  // The trace follows the settings while its view is on screen.
  if (auto* dock = window().findChild<QDockWidget*>(QStringLiteral("pipelineDock"))) dock->raise();
  QApplication::processEvents();
  pipe->setSelection(0, 0, 13, 1, 6);  // token 13: a delta of anchor token 10 (groups of 10)
  const auto& tr = pipe->trace();
  ASSERT_EQ(tr.elements.size(), 6u);
  EXPECT_EQ(tr.token, 13);
  EXPECT_EQ(pipe->table()->columnCount(), 6);
  EXPECT_EQ(pipe->table()->rowCount(), 12);
  const auto cache = window().session()->cache();
  const kv::KVCache decoded = codec::decode(codec->lastResult()->bytes);
  // cachegen's defaults (issue #14) code keys with RoPE removed (key_space=
  // pre_rope), which the trace shows, and keep token 0 exact (sinks=1), so
  // anchor groups of 10 start at token 1: token 13's anchor is 11.
  kv::KVCache coded = *cache, decoded_coded = decoded;
  kv::remove_rope(coded);
  kv::remove_rope(decoded_coded);
  for (const auto& e : tr.elements) {
    EXPECT_FLOAT_EQ(e.original, coded.channel_value(0, kv::Kind::Key, 13, e.channel));
    const float d = decoded_coded.channel_value(0, kv::Kind::Key, 13, e.channel);
    EXPECT_NEAR(e.reconstructed, d, 1e-4f * std::max(1.0f, std::abs(d))) << e.channel;  // RoPE round trip
    if (!e.raw) {
      EXPECT_EQ(e.anchor_token, 11);
    }
  }
  EXPECT_EQ(pipe->table()->item(2, 0)->text(), QString::number(tr.elements[0].q));
  EXPECT_GT(pipe->modelPlot()->plottable(0)->interface1D()->dataCount(), 0);
  EXPECT_TRUE(pipe->explanation().contains(QStringLiteral("bits")));
  // A bin change in the codec panel re-traces with the new bins.
  QStringList bins = QString::fromStdString(codec->config().params.at("key_bins")).split(QLatin1Char(','));
  bins[0] = QStringLiteral("8");
  QSignalSpy traced(pipe, &PipelinePanel::traced);
  ASSERT_TRUE(codec->setParam(QStringLiteral("key_bins"), bins.join(QLatin1Char(','))));
  ASSERT_TRUE(traced.count() > 0 || traced.wait(5000));
  EXPECT_EQ(pipe->trace().bins, 8);
  EXPECT_EQ(pipe->trace().M, 3);
}

}  // namespace
}  // namespace kvscope::gui
#endif

#if KVSCOPE_GUI_HAVE_HDF5 && defined(KVSCOPE_CLI_PATH)
#include <QProcess>

namespace kvscope::gui {
namespace {

TEST_F(WindowTest, Hdf5ExportIsDecodedByTheCli) {
  MainWindow& window = this->window();
  ASSERT_FALSE(encodeAfter([&] { window.openCacheFile(syntheticCache()); }).isEmpty());
  const QString h5 = path(QStringLiteral("export.h5"));
  QSignalSpy exported(&window, &MainWindow::exported);
  QSignalSpy errors(&window, &MainWindow::errorShown);
  window.exportHdf5(h5);
  ASSERT_TRUE(QTest::qWaitFor([&] { return exported.count() > 0 || errors.count() > 0; }, 30000));
  ASSERT_EQ(errors.count(), 0) << errors.at(0).at(1).toString().toStdString();
  ASSERT_TRUE(QFileInfo::exists(h5));
  const QString out = path(QStringLiteral("decoded.safetensors"));
  QProcess cli;
  cli.start(QStringLiteral(KVSCOPE_CLI_PATH),
            {QStringLiteral("decode"), QStringLiteral("--in"), h5, QStringLiteral("--out"), out});
  ASSERT_TRUE(cli.waitForFinished(60000));
  ASSERT_EQ(cli.exitCode(), 0) << cli.readAllStandardError().toStdString();
  const kv::KVCache decoded = io::load_cache(out.toStdString());
  EXPECT_EQ(decoded.shape(), window.session()->cache()->shape());
  // cachegen is lossy but close: within the coarsest bin of the synthetic values.
  EXPECT_LT(kv::max_abs_difference(decoded, *window.session()->cache()), 5.0f);
}

}  // namespace
}  // namespace kvscope::gui
#endif

#if KVSCOPE_GUI_HAVE_HDF5
namespace kvscope::gui {
namespace {

// Regression (issue 21): File > Open KV Cache could not open the app's own
// .h5 export ("not a valid safetensors file"), and `kvscope file.h5`
// prefilled the HDF5 bytes as text. Opened by content now, from every entry.
TEST_F(WindowTest, RegressionOwnHdf5ExportDidNotOpenAsACache) {
  MainWindow& window = this->window();
  ASSERT_FALSE(encodeAfter([&] { window.openCacheFile(syntheticCache()); }).isEmpty());
  const auto original = window.session()->cache();
  const QString h5 = path(QStringLiteral("export.h5"));
  QSignalSpy exported(&window, &MainWindow::exported);
  QSignalSpy errors(&window, &MainWindow::errorShown);
  window.exportHdf5(h5);
  ASSERT_TRUE(QTest::qWaitFor([&] { return exported.count() > 0 || errors.count() > 0; }, 30000));
  ASSERT_EQ(errors.count(), 0) << errors.at(0).at(1).toString().toStdString();
  // Through the path every entry (menu, command line, drop) takes.
  QSignalSpy loaded(&window, &MainWindow::prefilled);
  window.openPath(h5);
  ASSERT_TRUE(QTest::qWaitFor([&] { return loaded.count() > 0 || errors.count() > 0; }, 30000));
  ASSERT_EQ(errors.count(), 0) << errors.at(0).at(1).toString().toStdString();
  EXPECT_EQ(window.session()->cache()->shape(), original->shape());
  EXPECT_LT(kv::max_abs_difference(*window.session()->cache(), *original), 5.0f);
  EXPECT_TRUE(window.session()->contextText().isEmpty()) << "the HDF5 bytes became a context";
  // The same file renamed without its suffix still opens as a cache.
  const QString renamed = path(QStringLiteral("export-copy"));
  ASSERT_TRUE(QFile::copy(h5, renamed));
  const int before = int(loaded.count());
  window.openPath(renamed);
  ASSERT_TRUE(QTest::qWaitFor([&] { return loaded.count() > before || errors.count() > 0; }, 30000));
  ASSERT_EQ(errors.count(), 0) << errors.at(0).at(1).toString().toStdString();
}

TEST_F(WindowTest, KvcBitstreamOpensAsACache) {
  MainWindow& window = this->window();
  ASSERT_FALSE(encodeAfter([&] { window.openCacheFile(syntheticCache()); }).isEmpty());
  const auto result = window.codecPanel()->lastResult();
  const QString kvc = writeFile(
      QStringLiteral("cache.kvc"),
      QByteArray(reinterpret_cast<const char*>(result->bytes.data()), qsizetype(result->bytes.size())));
  QSignalSpy loaded(&window, &MainWindow::prefilled);
  QSignalSpy errors(&window, &MainWindow::errorShown);
  window.openPath(kvc);
  ASSERT_TRUE(loaded.wait(30000));
  EXPECT_EQ(errors.count(), 0);
  EXPECT_EQ(window.session()->cache()->shape().tokens, 64);
}

}  // namespace
}  // namespace kvscope::gui
#endif

// Regression (issue 21): a binary file renamed .txt was accepted as a context.
namespace kvscope::gui {
namespace {
TEST_F(WindowTest, RegressionBinaryFileRenamedTxtWasAcceptedAsAContext) {
  const QString bin = writeFile(QStringLiteral("model.txt"), QByteArray("PK\x03\x04\x00\x00binary", 12));
  QSignalSpy errors(&window(), &MainWindow::errorShown);
  window().openPath(bin);
  ASSERT_EQ(errors.count(), 1);
  EXPECT_TRUE(errors.at(0).at(1).toString().contains(bin));
  EXPECT_TRUE(errors.at(0).at(1).toString().contains(QStringLiteral("not a text file")));
  EXPECT_TRUE(window().session()->contextText().isEmpty());
}
}  // namespace
}  // namespace kvscope::gui

#if KVSCOPE_GUI_HAVE_STREAM
#include <QDir>
#include <QHeaderView>
#include <QProgressBar>
#include <QTableWidget>

#include "stream_timeline.h"

namespace kvscope::gui {
namespace {

using StreamPanelTest = WindowFixture;

TEST_F(StreamPanelTest, RunsTheStreamerAndDrawsTheTimeline) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  ASSERT_NE(panel, nullptr);
  panel->setChunkTokens(16);
  panel->setRunBaselines(false);
  panel->setProfile(stream::BandwidthProfile::constant(50));
  ASSERT_TRUE(runStream());
  ASSERT_EQ(panel->reports().size(), 1u);
  EXPECT_EQ(panel->reports()[0].chunks.size(), 4u);  // 64 tokens / 16
  EXPECT_GT(panel->reports()[0].ttft_s, 0.0);
  EXPECT_EQ(panel->timeline()->adaptiveChunks().size(), 4u);
  // The lanes are named after the ladder's levels (they were numbers), text on top.
  const auto names = panel->timeline()->levelAxis()->ticker().dynamicCast<QCPAxisTickerText>();
  ASSERT_TRUE(names);
  const auto& levels = panel->currentLadder().levels;
  ASSERT_EQ(names->ticks().size(), int(levels.size()) + 1);
  EXPECT_EQ(names->ticks().value(0), QString::fromStdString(levels[0].name));
  EXPECT_EQ(names->ticks().value(double(levels.size())), QStringLiteral("text"));
}

// Items of the timeline drawn in one of its three plots.
template <typename Item>
QList<Item*> itemsIn(StreamTimeline* t, QCPAxisRect* rect) {
  QList<Item*> out;
  for (int i = 0; i < t->itemCount(); ++i)
    if (auto* item = qobject_cast<Item*>(t->item(i)); item && item->clipAxisRect() == rect) out << item;
  return out;
}

// The fixed baselines are drawn beside the adaptive run, one lane each, with the SLO.
TEST_F(StreamPanelTest, BaselinesShownSideBySideWithTheAdaptiveRun) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  panel->setChunkTokens(16);
  panel->setRunBaselines(true);  // fp16, int8 (text needs the model, which a raw cache has not)
  panel->setProfile(stream::BandwidthProfile::constant(0.5));
  panel->setSlo(0.05);
  ASSERT_TRUE(runStream());
  ASSERT_EQ(panel->reports().size(), 3u);
  StreamTimeline* t = panel->timeline();
  const auto ticker = t->laneAxis()->ticker().dynamicCast<QCPAxisTickerText>();
  ASSERT_TRUE(ticker);
  ASSERT_EQ(ticker->ticks().size(), 3);
  EXPECT_EQ(ticker->ticks().value(0), QStringLiteral("adaptive"));
  EXPECT_EQ(ticker->ticks().value(1), QStringLiteral("fp16"));
  EXPECT_EQ(ticker->ticks().value(2), QStringLiteral("int8"));
  // Per lane: 4 chunk bars, and one load-time mark, all at their report's times.
  int bars[3] = {0, 0, 0}, marks[3] = {0, 0, 0};
  for (auto* r : itemsIn<QCPItemRect>(t, t->lanesRect())) {
    const int lane = int(std::lround((r->topLeft->coords().y() + r->bottomRight->coords().y()) / 2));
    ASSERT_GE(lane, 0);
    ASSERT_LT(lane, 3);
    ++bars[lane];
  }
  for (auto* l : itemsIn<QCPItemLine>(t, t->lanesRect())) {
    const int lane = int(std::lround((l->start->coords().y() + l->end->coords().y()) / 2));
    ASSERT_GE(lane, 0);
    ASSERT_LT(lane, 3);
    EXPECT_DOUBLE_EQ(l->start->coords().x(), panel->reports()[std::size_t(lane)].ttft_s);
    ++marks[lane];
  }
  for (int lane = 0; lane < 3; ++lane) {
    EXPECT_EQ(bars[lane], 4) << lane;
    EXPECT_EQ(marks[lane], 1) << lane;
  }
  // fp16 sends more bytes than int8 on the same link, so it loads later.
  EXPECT_GT(panel->reports()[1].ttft_s, panel->reports()[2].ttft_s);
  // The SLO line crosses all three plots at the SLO.
  for (QCPAxisRect* rect : {t->bandwidthRect(), t->levelRect(), t->lanesRect()}) {
    bool slo = false;
    for (auto* line : itemsIn<QCPItemStraightLine>(t, rect))
      slo = slo || (line->point1->coords().x() == 0.05 && line->point2->coords().x() == 0.05);
    EXPECT_TRUE(slo);
  }
}

// Regression (issue 21): the results table showed two of the four runs
// (adaptive and the fp16, int8 and text baselines); the rest needed scrolling.
TEST_F(StreamPanelTest, RegressionResultsTableShowedTwoOfFourRows) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  window().resize(1366, 768);  // the smallest screen the window is laid out for
  if (auto* dock = window().findChild<QDockWidget*>(QStringLiteral("streamDock"))) dock->raise();
  panel->setChunkTokens(16);
  panel->setRunBaselines(true);
  panel->setProfile(stream::BandwidthProfile::constant(0.5));
  ASSERT_TRUE(runStream());
  QTableWidget* table = panel->table();
  ASSERT_EQ(table->rowCount(), int(panel->reports().size()));
  ASSERT_TRUE(QTest::qWaitForWindowExposed(table));
  EXPECT_GE(table->viewport()->height(), 4 * table->verticalHeader()->defaultSectionSize())
      << "four runs must fit without scrolling";
  for (int row = 0; row < table->rowCount(); ++row)
    EXPECT_TRUE(table->viewport()->rect().contains(table->visualItemRect(table->item(row, 0))))
        << "row " << row << " hidden";
}

// Regression (issue 21): the bandwidth, level and lane plots used different
// time ranges. One axis now: zooming one plot moves the others.
TEST_F(StreamPanelTest, RegressionStreamPlotsUsedDifferentTimeRanges) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  panel->setChunkTokens(16);
  panel->setRunBaselines(true);
  panel->setProfile(stream::BandwidthProfile::piecewise({{0, 2}, {0.05, 0.4}}));
  panel->setSlo(0.1);
  ASSERT_TRUE(runStream());
  StreamTimeline* t = panel->timeline();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(t));
  t->replot(QCustomPlot::rpImmediateRefresh);
  const QCPRange home = t->timeAxis(0)->range();
  for (int i = 1; i < 3; ++i) EXPECT_EQ(t->timeAxis(i)->range(), home);
  // Every run in view, up to three times the SLO (a far outlier would squeeze the rest).
  double longest = 0;
  for (const auto& r : panel->reports()) longest = std::max(longest, r.ttft_s);
  EXPECT_GT(home.upper, std::min(longest, 3 * panel->slo()));
  EXPECT_GE(home.upper, 1.5 * panel->slo());
  // Aligned: the three plots' left and right edges coincide.
  EXPECT_EQ(t->bandwidthRect()->left(), t->lanesRect()->left());
  EXPECT_EQ(t->levelRect()->right(), t->lanesRect()->right());
  // Zoom the lanes plot: all three follow; double-click returns to the home view.
  const QPoint centre = t->lanesRect()->center();
  QWheelEvent wheel(centre, t->mapToGlobal(centre), QPoint(), QPoint(0, 480), Qt::NoButton, Qt::NoModifier,
                    Qt::NoScrollPhase, false);
  QApplication::sendEvent(t, &wheel);
  ASSERT_TRUE(t->userZoomed());
  ASSERT_NE(t->timeAxis(2)->range(), home);
  EXPECT_EQ(t->timeAxis(0)->range(), t->timeAxis(2)->range());
  EXPECT_EQ(t->timeAxis(1)->range(), t->timeAxis(2)->range());
  QTest::mouseDClick(t, Qt::LeftButton, Qt::NoModifier, centre);
  EXPECT_FALSE(t->userZoomed());
  EXPECT_EQ(t->timeAxis(0)->range(), home);
}

// Regression (issue 21): the level plot showed the last baseline's chunks,
// not the adaptive run's; and hovering a chunk now says why its level was chosen.
TEST_F(StreamPanelTest, RegressionLevelPlotShowedTheLastBaseline) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  panel->setChunkTokens(16);
  panel->setRunBaselines(true);
  panel->setProfile(stream::BandwidthProfile::piecewise({{0, 2}, {0.05, 0.4}}));
  panel->setSlo(0.2);
  ASSERT_TRUE(runStream());
  const auto& adaptive = panel->reports().front();
  ASSERT_EQ(adaptive.policy, "adaptive");
  const auto& shown = panel->timeline()->adaptiveChunks();
  ASSERT_EQ(shown.size(), adaptive.chunks.size());
  for (std::size_t i = 0; i < shown.size(); ++i) {
    EXPECT_EQ(shown[i].level, adaptive.chunks[i].level) << i;
    EXPECT_DOUBLE_EQ(shown[i].arrival_s, adaptive.chunks[i].arrival_s) << i;
  }
  const auto& c = shown[1];
  const double lane = c.level == stream::kTextLevel ? double(panel->currentLadder().levels.size()) : c.level;
  const QString why = panel->timeline()->chunkExplanation((c.send_start_s + c.arrival_s) / 2, lane);
  EXPECT_TRUE(why.contains(QStringLiteral("estimate"))) << why.toStdString();
  for (const auto& level : panel->currentLadder().levels)
    EXPECT_TRUE(why.contains(QString::fromStdString(level.name))) << why.toStdString();
  if (c.level != stream::kTextLevel) {
    EXPECT_TRUE(why.contains(QStringLiteral("chosen"))) << why.toStdString();
  }
}

// Regression (issue 21): the progress bar still said "streaming text" when the run was done.
TEST_F(StreamPanelTest, RegressionProgressSaidStreamingTextWhenDone) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  panel->setChunkTokens(16);
  ASSERT_TRUE(runStream());
  auto* bar = panel->findChild<QProgressBar*>();
  ASSERT_NE(bar, nullptr);
  EXPECT_TRUE(bar->format().startsWith(QStringLiteral("done"))) << bar->format().toStdString();
  EXPECT_GT(panel->lastRunWallSeconds(), 0.0);
}

// The bandwidth trace drew its lowest step on the bottom edge (it read as an
// outage): rates start at 0.
TEST_F(StreamPanelTest, ProfilePlotShowsTheLowestRateAboveTheAxis) {
  StreamPanel* panel = window().streamPanel();
  panel->setProfile(stream::BandwidthProfile::piecewise({{0, 100}, {1, 15}, {3, 40}}));
  StreamTimeline* t = panel->timeline();
  t->resetView();
  t->replot(QCustomPlot::rpImmediateRefresh);
  EXPECT_EQ(t->bandwidthAxis()->range().lower, 0);
  EXPECT_GT(t->bandwidthAxis()->range().upper, 100);
}

// Regression (issue 21): after dragging a trace point its description still
// said "drop to 15 Mbit/s".
TEST_F(StreamPanelTest, RegressionDraggedTraceKeptItsOldDescription) {
  StreamPanel* panel = window().streamPanel();
  window().resize(1600, 1000);
  if (auto* dock = window().findChild<QDockWidget*>(QStringLiteral("streamDock"))) dock->raise();
  panel->setProfile(stream::resolve_profile("wifi-drop"));
  StreamTimeline* t = panel->timeline();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(t));
  t->replot(QCustomPlot::rpImmediateRefresh);
  const auto& p = panel->profile().points()[1];  // the 15 Mbit/s step
  const QPoint at(int(t->timeAxis(0)->coordToPixel(p.time_s)), int(t->bandwidthAxis()->coordToPixel(p.mbps)));
  const QPoint to(at.x(), int(t->bandwidthAxis()->coordToPixel(60)));
  QTest::mousePress(t, Qt::LeftButton, Qt::NoModifier, at);
  QMouseEvent move(QEvent::MouseMove, QPointF(to), t->mapToGlobal(QPointF(to)), Qt::NoButton, Qt::LeftButton,
                   Qt::NoModifier);
  QApplication::sendEvent(t, &move);
  QTest::mouseRelease(t, Qt::LeftButton, Qt::NoModifier, to);
  EXPECT_NEAR(panel->profile().points()[1].mbps, 60, 6);
  const std::string d = panel->profile().description();
  EXPECT_EQ(d.find("15 Mbit/s"), std::string::npos) << d;
  EXPECT_NE(d.find("Edited"), std::string::npos) << d;
}

// The Store field: a run publishes the context to a folder store and loads it
// from there (a raw cache without token ids is named by its values), and the
// table shows TTFT with its parts.
TEST_F(StreamPanelTest, StoreFieldLoadsFromAFolderStoreAndTableShowsTtftParts) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  panel->setChunkTokens(16);
  panel->setRunBaselines(false);
  panel->setProfile(stream::BandwidthProfile::constant(50));
  const QString folder = path(QStringLiteral("chunks"));
  panel->setStoreSpec(QStringLiteral("dir:") + folder);
  EXPECT_EQ(panel->storeSpec(), QStringLiteral("dir:") + folder);
  ASSERT_TRUE(runStream());
  ASSERT_EQ(panel->reports().size(), 1u);
  const auto& r = panel->reports()[0];
  EXPECT_NE(r.store.find(folder.toStdString()), std::string::npos) << r.store;
  EXPECT_EQ(r.chunks.size(), 4u);
  for (const auto& c : r.chunks) EXPECT_FALSE(c.key.empty());
  EXPECT_DOUBLE_EQ(r.ttft_s, r.context_loaded_s + r.query_prefill_s + r.first_token_s);
  EXPECT_FALSE(QDir(folder).isEmpty());  // the chunks were published there
  auto* table = panel->findChild<QTableWidget*>(QStringLiteral("streamTable"));
  ASSERT_NE(table, nullptr);
  ASSERT_EQ(table->rowCount(), 1);
  QStringList headers;
  for (int c = 0; c < table->columnCount(); ++c) headers << table->horizontalHeaderItem(c)->text();
  for (const char* h : {"TTFT (s)", "loaded (s)", "query (s)", "first token (s)"})
    EXPECT_TRUE(headers.contains(QString::fromLatin1(h))) << h;
  EXPECT_EQ(table->item(0, int(headers.indexOf(QStringLiteral("loaded (s)"))))->text(),
            QString::number(r.context_loaded_s, 'f', 3));
}

// A store that cannot be opened ends the run with an error naming it, not a hang.
TEST_F(StreamPanelTest, UnreachableStoreIsAnError) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  panel->setChunkTokens(16);
  panel->setRunBaselines(false);
  panel->setStoreSpec(QStringLiteral("nosuchscheme:x"));
  const auto result = runStream();
  ASSERT_FALSE(result);
  EXPECT_NE(std::string(result.message()).find("nosuchscheme"), std::string::npos) << result.message();
}

// The workspace keeps the streaming setup: profile (every kind), SLO, chunk size, ladder.
TEST_F(StreamPanelTest, WorkspaceRestoresProfileSloChunkAndLadder) {
  const QString ws = path(QStringLiteral("s.kvscope"));
  const QString random_ws = path(QStringLiteral("r.kvscope"));
  {
    StreamPanel* panel = window().streamPanel();
    ASSERT_NE(panel, nullptr);
    auto bp = stream::BandwidthProfile::piecewise({{0, 40}, {1.5, 7.5}, {3, 0}, {4, 90}});
    bp.set_name("edited");
    panel->setProfile(bp);
    panel->setSlo(3.25);
    panel->setChunkTokens(96);
    ASSERT_TRUE(panel->setLadder(QStringLiteral("quantization")));
    ASSERT_TRUE(window().saveWorkspace(ws));
    panel->setProfile(stream::BandwidthProfile::per_chunk_random(5, 80, 0xFFFFFFFFFFFFFFF1ull));
    ASSERT_TRUE(window().saveWorkspace(random_ws));
  }
  newWindow();
  StreamPanel* panel = window().streamPanel();
  ASSERT_NE(panel->ladder(), QStringLiteral("quantization")) << "the test needs a non-default ladder";
  ASSERT_TRUE(window().loadWorkspace(ws));
  EXPECT_DOUBLE_EQ(panel->slo(), 3.25);
  EXPECT_EQ(panel->chunkTokens(), 96);
  EXPECT_EQ(panel->ladder(), QStringLiteral("quantization"));
  EXPECT_EQ(panel->currentLadder().levels.back().config.codec, "int4");
  const auto& p = panel->profile();
  EXPECT_EQ(p.kind(), stream::BandwidthProfile::Kind::Piecewise);
  EXPECT_EQ(p.name(), "edited");
  ASSERT_EQ(p.points().size(), 4u);
  EXPECT_DOUBLE_EQ(p.points()[1].time_s, 1.5);
  EXPECT_DOUBLE_EQ(p.points()[1].mbps, 7.5);
  EXPECT_DOUBLE_EQ(p.points()[3].mbps, 90);
  ASSERT_TRUE(window().loadWorkspace(random_ws));
  EXPECT_EQ(panel->profile().kind(), stream::BandwidthProfile::Kind::PerChunkRandom);
  EXPECT_EQ(panel->profile().seed(), 0xFFFFFFFFFFFFFFF1ull);
  EXPECT_DOUBLE_EQ(panel->profile().max_mbps(), 80);
  // A bad profile in a workspace is an error dialog naming the file, not a crash.
  QByteArray bytes = readFile(random_ws);
  bytes.replace("per_chunk_random", "sideways");
  const QString bad = writeFile(QStringLiteral("bad.kvscope"), bytes);
  QSignalSpy errors(&window(), &MainWindow::errorShown);
  EXPECT_FALSE(window().loadWorkspace(bad));
  ASSERT_EQ(errors.count(), 1);
  EXPECT_TRUE(errors.at(0).at(1).toString().contains(bad));
}

// Workspaces from before the ladder editor name a shipped ladder as a string.
TEST_F(StreamPanelTest, WorkspaceWithALadderNameStillLoads) {
  const QString ws = writeFile(
      QStringLiteral("old.kvscope"),
      R"({"format": "kvscope-workspace", "version": 1, "stream": {"ladder": "quantization", "slo_s": 1.5}})");
  ASSERT_TRUE(window().loadWorkspace(ws));
  EXPECT_EQ(window().streamPanel()->ladder(), QStringLiteral("quantization"));
  EXPECT_DOUBLE_EQ(window().streamPanel()->slo(), 1.5);
}

// Regression (issue 8): a workspace whose bandwidth profile was bad applied its
// codec settings (and anything before the profile) and only then reported the
// error. Every part is validated first now: any error applies nothing.
TEST_F(StreamPanelTest, RegressionBadWorkspaceProfileAppliedCodecSettingsBeforeTheError) {
  StreamPanel* panel = window().streamPanel();
  CodecPanel* codec = window().codecPanel();
  ASSERT_EQ(codec->config().codec, "cachegen");
  const double slo = panel->slo();
  const QString ladder = panel->ladder();
  const std::string profile = panel->profile().name();
  const QList<std::pair<QString, QString>> cases = {
      {R"("profile": {"kind": "sideways"})", QStringLiteral("stream.profile.kind")},
      {R"("profile": {"kind": "piecewise", "points": [[0, 5], "x"]})",
       QStringLiteral("stream.profile.points")},
      {R"("ladder": {"levels": [{"codec": "no-such-codec"}]})", QStringLiteral("no-such-codec")},
      {R"("chunk_tokens": 3)", QStringLiteral("stream.chunk_tokens")},
  };
  for (const auto& [bad_part, problem] : cases) {
    // Good codec, context and SLO beside the bad part: none of them may be applied.
    const QString text = QStringLiteral(R"({"format": "kvscope-workspace", "version": 1,
        "context": {"name": "ws", "text": "restored text"}, "codec": {"name": "int8", "params": {}},
        "stream": {"slo_s": 7.5, %1}})")
                             .arg(bad_part);
    const QString ws = writeFile(QStringLiteral("bad-part.kvscope"), text.toUtf8());
    QSignalSpy errors(&window(), &MainWindow::errorShown);
    EXPECT_FALSE(window().loadWorkspace(ws)) << problem.toStdString();
    ASSERT_EQ(errors.count(), 1) << problem.toStdString();
    const QString message = errors.at(0).at(1).toString();
    EXPECT_TRUE(message.contains(ws)) << message.toStdString();
    EXPECT_TRUE(message.contains(problem)) << message.toStdString();
    EXPECT_EQ(codec->config().codec, "cachegen") << problem.toStdString();
    EXPECT_DOUBLE_EQ(panel->slo(), slo);
    EXPECT_EQ(panel->ladder(), ladder);
    EXPECT_EQ(panel->profile().name(), profile);
    EXPECT_TRUE(window().session()->contextText().isEmpty());
  }
}

}  // namespace
}  // namespace kvscope::gui
#endif

#if KVSCOPE_GUI_HAVE_CODECS
namespace kvscope::gui {
namespace {
// Regression (issue 21): the app encoded the cache several times on its own
// after a new cache arrived; one encode per change now.
TEST_F(WindowTest, RegressionNewCacheWasEncodedSeveralTimes) {
  CodecPanel* panel = window().codecPanel();
  const int before = panel->encodesStarted();
  ASSERT_FALSE(encodeAfter([&] { window().openCacheFile(syntheticCache()); }).isEmpty());
  QTest::qWait(300);  // anything queued behind the first encode
  EXPECT_EQ(panel->encodesStarted() - before, 1);
  ASSERT_FALSE(
      encodeAfter([&] { panel->setParam(QStringLiteral("group_size"), QStringLiteral("8")); }).isEmpty());
  QTest::qWait(300);
  EXPECT_EQ(panel->encodesStarted() - before, 2);
}
}  // namespace
}  // namespace kvscope::gui
#endif

#if KVSCOPE_GUI_HAVE_CODECS
#include <QComboBox>

#include "help_panel.h"

namespace kvscope::gui {
namespace {
// Regression (issue 19): the entropy bars used one quantization step per
// channel, unlike cachegen's per-token default, so they did not predict the
// coded bits. The default bars are now the codec's own symbol entropies with
// the current settings; the per-channel ones say what they are.
TEST_F(CodecPanelTest, RegressionEntropyBarsDidNotQuantizeLikeTheCodec) {
  ASSERT_FALSE(encodeAfter([&] { window().openCacheFile(syntheticCache()); }).isEmpty());
  const auto stages = window().codecPanel()->lastStages();
  ASSERT_NE(stages, nullptr);
  DistributionsPanel* dist = window().distributionsPanel();
  ASSERT_TRUE(QTest::qWaitFor([&] { return dist->stats() != nullptr; }, 10000));
  auto* metric = dist->findChild<QComboBox*>(QStringLiteral("metricCombo"));
  ASSERT_NE(metric, nullptr);
  EXPECT_TRUE(metric->currentText().contains(QStringLiteral("as cachegen codes")))
      << metric->currentText().toStdString();
  auto* k_bars = qobject_cast<QCPBars*>(dist->summaryPlot()->plottable(0));
  ASSERT_NE(k_bars, nullptr);
  ASSERT_EQ(k_bars->data()->size(), 4);
  for (int l = 0; l < 4; ++l)
    EXPECT_DOUBLE_EQ(k_bars->data()->at(l)->value, stages->raw_entropy.per_layer[std::size_t(l) * 2]) << l;
  metric->setCurrentIndex(
      metric->findText(QStringLiteral("entropy at one per-channel step: raw values (bits)")));
  EXPECT_TRUE(dist->summaryPlot()->yAxis->label().contains(QStringLiteral("per-channel step")));
}

// Regression (issue 21): Help was a glossary asserting that deltas need fewer
// bits; it is a how-to whose statements come from the loaded cache.
TEST_F(CodecPanelTest, RegressionHelpAssertedDeltasNeedFewerBits) {
  ASSERT_FALSE(encodeAfter([&] { window().openCacheFile(syntheticCache()); }).isEmpty());
  const auto stages = window().codecPanel()->lastStages();
  ASSERT_NE(stages, nullptr);
  const QString page = window().helpPanel()->page();
  EXPECT_TRUE(page.contains(QStringLiteral("Find the smallest setting with KL under 0.01")));
  EXPECT_TRUE(page.contains(QStringLiteral("Make adaptation meet an SLO")));
  EXPECT_TRUE(page.contains(QString::number(stages->raw_entropy.per_layer[0], 'f', 2))) << page.toStdString();
  EXPECT_TRUE(page.contains(QString::number(stages->delta_entropy.per_layer[0], 'f', 2)))
      << page.toStdString();
  int cheaper = 0;
  for (std::size_t i = 0; i < stages->raw_entropy.per_layer.size(); ++i)
    cheaper += stages->delta_entropy.per_layer[i] < stages->raw_entropy.per_layer[i];
  EXPECT_TRUE(page.contains(QStringLiteral("in %1 of 8").arg(cheaper))) << page.toStdString();
}
}  // namespace
}  // namespace kvscope::gui
#endif
