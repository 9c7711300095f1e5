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

#if KVSCOPE_GUI_HAVE_STREAM
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
  EXPECT_GE(panel->timelinePlot()->itemCount(), 4);  // one bar per chunk (+ labels, SLO line)
  // The lanes are named after the ladder's levels (they were numbers), text on top.
  const auto names = panel->timelinePlot()->yAxis->ticker().dynamicCast<QCPAxisTickerText>();
  ASSERT_TRUE(names);
  const auto& levels = panel->currentLadder().levels;
  ASSERT_EQ(names->ticks().size(), int(levels.size()) + 1);
  EXPECT_EQ(names->ticks().value(0), QString::fromStdString(levels[0].name));
  EXPECT_EQ(names->ticks().value(double(levels.size())), QStringLiteral("text"));
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
  PlotWidget* cmp = panel->comparisonPlot();
  const auto ticker = cmp->yAxis->ticker().dynamicCast<QCPAxisTickerText>();
  ASSERT_TRUE(ticker);
  ASSERT_EQ(ticker->ticks().size(), 3);
  EXPECT_EQ(ticker->ticks().value(0), QStringLiteral("adaptive"));
  EXPECT_EQ(ticker->ticks().value(1), QStringLiteral("fp16"));
  EXPECT_EQ(ticker->ticks().value(2), QStringLiteral("int8"));
  // Per lane: 4 chunk bars, and one load-time mark, all at their report's times.
  int bars[3] = {0, 0, 0}, marks[3] = {0, 0, 0};
  for (int i = 0; i < cmp->itemCount(); ++i) {
    if (auto* r = qobject_cast<QCPItemRect*>(cmp->item(i))) {
      const int lane = int(std::lround((r->topLeft->coords().y() + r->bottomRight->coords().y()) / 2));
      ASSERT_GE(lane, 0);
      ASSERT_LT(lane, 3);
      ++bars[lane];
    } else if (auto* l = qobject_cast<QCPItemLine*>(cmp->item(i))) {
      const int lane = int(std::lround((l->start->coords().y() + l->end->coords().y()) / 2));
      ASSERT_GE(lane, 0);
      ASSERT_LT(lane, 3);
      EXPECT_DOUBLE_EQ(l->start->coords().x(), panel->reports()[std::size_t(lane)].ttft_s);
      ++marks[lane];
    }
  }
  for (int lane = 0; lane < 3; ++lane) {
    EXPECT_EQ(bars[lane], 4) << lane;
    EXPECT_EQ(marks[lane], 1) << lane;
  }
  // fp16 sends more bytes than int8 on the same link, so it loads later.
  EXPECT_GT(panel->reports()[1].ttft_s, panel->reports()[2].ttft_s);
  // The SLO line spans every lane at the SLO.
  bool slo = false;
  for (int i = 0; i < cmp->itemCount(); ++i)
    if (auto* line = qobject_cast<QCPItemStraightLine*>(cmp->item(i)))
      slo = slo || (line->point1->coords().x() == 0.05 && line->point2->coords().x() == 0.05);
  EXPECT_TRUE(slo);
}

// The comparison lanes are items; double-click still returns to the view of
// every lane, the longest run and the SLO, like the other plots.
TEST_F(StreamPanelTest, ComparisonPlotResetsOnDoubleClick) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  panel->setChunkTokens(16);
  panel->setRunBaselines(true);
  panel->setProfile(stream::BandwidthProfile::constant(0.5));
  panel->setSlo(0.05);
  ASSERT_TRUE(runStream());
  PlotWidget* cmp = panel->comparisonPlot();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(cmp));
  QTest::qWait(20);
  const QCPRange home_x = cmp->xAxis->range(), home_y = cmp->yAxis->range();
  double longest = 0;
  for (const auto& r : panel->reports()) longest = std::max(longest, r.ttft_s);
  EXPECT_GT(home_x.upper, longest);
  EXPECT_LT(home_y.lower, 0);
  EXPECT_GT(home_y.upper, 2);  // three lanes
  const QPoint centre = cmp->axisRect()->center();
  QWheelEvent wheel(centre, cmp->mapToGlobal(centre), QPoint(), QPoint(0, 480), Qt::NoButton, Qt::NoModifier,
                    Qt::NoScrollPhase, false);
  QApplication::sendEvent(cmp, &wheel);
  ASSERT_TRUE(cmp->userZoomed());
  ASSERT_NE(cmp->xAxis->range(), home_x);
  QTest::mouseDClick(cmp, Qt::LeftButton, Qt::NoModifier, centre);
  EXPECT_FALSE(cmp->userZoomed());
  EXPECT_EQ(cmp->xAxis->range(), home_x);
  EXPECT_EQ(cmp->yAxis->range(), home_y);
}

// The profile plot fitted its y axis to the data, so wifi-drop's lowest step
// (15 Mbit/s) lay on the bottom edge and read as an outage
// (docs/screenshots/pipeline.png): rates now start at 0.
TEST_F(StreamPanelTest, ProfilePlotShowsTheLowestRateAboveTheAxis) {
  StreamPanel* panel = window().streamPanel();
  panel->setProfile(stream::BandwidthProfile::piecewise({{0, 100}, {1, 15}, {3, 40}}));
  PlotWidget* plot = panel->profilePlot();
  plot->replot(QCustomPlot::rpImmediateRefresh);
  EXPECT_EQ(plot->yAxis->range().lower, 0);
  EXPECT_GT(plot->yAxis->range().upper, 100);
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
