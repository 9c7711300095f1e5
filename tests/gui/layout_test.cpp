// SPDX-License-Identifier: GPL-3.0-or-later
// The window's arrangement at common screen sizes (issue 21: it asked for at
// least 1602x1464, panels overlapped at 1600x1000, and switching codec moved
// the plots).
#include <QDockWidget>
#include <QTabWidget>
#include <QWheelEvent>

#include "distributions_panel.h"
#include "kvscope/codec/codec.h"
#include "plot_widget.h"
#include "window_fixture.h"
#if KVSCOPE_GUI_HAVE_EVAL
#include "rd_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_STREAM
#include "stream_timeline.h"
#endif

namespace kvscope::gui {
namespace {

using LayoutTest = WindowFixture;

// The docks the user sees at once: the raised tab of each area.
QList<QDockWidget*> visibleDocks(MainWindow& window) {
  QList<QDockWidget*> out;
  for (QDockWidget* d : window.findChildren<QDockWidget*>())
    if (d->isVisible() && !d->visibleRegion().isEmpty()) out << d;
  return out;
}

void raise(MainWindow& window, const char* name) {
  auto* dock = window.findChild<QDockWidget*>(QString::fromLatin1(name));
  ASSERT_NE(dock, nullptr) << name;
  dock->show();
  dock->raise();
  QApplication::processEvents();
}

TEST_F(LayoutTest, RegressionWindowAskedForAtLeast1602x1464) {
  MainWindow& w = window();
  const QSize min = w.minimumSizeHint().expandedTo(w.minimumSize());
  EXPECT_LE(min.width(), 1280) << min.width();
  EXPECT_LE(min.height(), 720) << min.height();
}

// At 1366x768 and 1920x1080, with each view raised in turn, the visible
// panels lie inside the window, do not overlap, and get at least their
// minimum size (nothing cut off).
TEST_F(LayoutTest, RegressionPanelsOverlappedAt1600x1000) {
  MainWindow& w = window();
  for (const QSize size : {QSize(1366, 768), QSize(1600, 1000), QSize(1920, 1080)}) {
    w.resize(size);
    QApplication::processEvents();
    for (const char* view : {"distributionsDock", "rdDock", "pipelineDock", "streamDock"}) {
      if (!w.findChild<QDockWidget*>(QString::fromLatin1(view))) continue;
      raise(w, view);
      const auto docks = visibleDocks(w);
      ASSERT_GE(docks.size(), 2) << view;
      for (int i = 0; i < docks.size(); ++i) {
        const QRect a = docks[i]->geometry();
        EXPECT_TRUE(w.rect().contains(a)) << docks[i]->objectName().toStdString() << " at " << size.width();
        const QSize need = docks[i]->widget()->minimumSizeHint();
        EXPECT_GE(docks[i]->widget()->width(), need.width()) << docks[i]->objectName().toStdString();
        EXPECT_GE(docks[i]->widget()->height(), need.height())
            << docks[i]->objectName().toStdString() << " at " << size.width() << "x" << size.height();
        for (int j = i + 1; j < docks.size(); ++j)
          EXPECT_FALSE(a.intersects(docks[j]->geometry()))
              << docks[i]->objectName().toStdString() << " overlaps " << docks[j]->objectName().toStdString();
      }
    }
  }
}

#if KVSCOPE_GUI_HAVE_CODECS
TEST_F(LayoutTest, RegressionSwitchingCodecMovedThePlots) {
  MainWindow& w = window();
  w.resize(1366, 768);
  ASSERT_TRUE(loadSyntheticCache());
  raise(w, "codecDock");
  auto* plots = w.codecPanel()->findChild<QTabWidget*>(QStringLiteral("codecPlots"));
  ASSERT_NE(plots, nullptr);
  QApplication::processEvents();
  const QRect before = plots->geometry();
  EXPECT_GE(before.height(), 150);
  // Every registered codec (fp16 has no parameters, cachegen many), then back.
  std::vector<std::string> codecs;
  for (const codec::Codec* c : codec::all_codecs()) codecs.push_back(c->name());
  codecs.push_back("cachegen");
  for (const std::string& codec : codecs) {
    if (codec == w.codecPanel()->config().codec) continue;
    ASSERT_FALSE(encodeAfter([&] {
                   ASSERT_TRUE(w.codecPanel()->setConfig({codec, {}}));
                 }).isEmpty())
        << codec;
    QApplication::processEvents();
    EXPECT_EQ(plots->geometry(), before) << codec;
  }
}
#endif

// Legends sit outside the plotted area, so they never cover data.
TEST_F(LayoutTest, RegressionLegendsCoveredData) {
  MainWindow& w = window();
  w.resize(1920, 1080);
  ASSERT_TRUE(loadSyntheticCache());
  QList<PlotWidget*> plots = {w.distributionsPanel()->histogramPlot(), w.distributionsPanel()->summaryPlot()};
#if KVSCOPE_GUI_HAVE_CODECS
  plots << w.codecPanel()->layerPlot();
#endif
#if KVSCOPE_GUI_HAVE_EVAL
  plots << w.rdPanel()->plot();
#endif
  for (PlotWidget* p : plots) {
    p->resize(600, 400);
    p->replot(QCustomPlot::rpImmediateRefresh);
    ASSERT_TRUE(p->legend->visible()) << p->objectName().toStdString();
    EXPECT_FALSE(p->legend->outerRect().intersects(p->axisRect()->rect())) << p->objectName().toStdString();
  }
}

// Every plot of a raised view gets a readable area at 1920x1080.
TEST_F(LayoutTest, EveryPlotReadableAt1920x1080) {
  MainWindow& w = window();
  w.resize(1920, 1080);
  ASSERT_TRUE(loadSyntheticCache());
  for (const char* view : {"distributionsDock", "rdDock", "streamDock"}) {
    if (!w.findChild<QDockWidget*>(QString::fromLatin1(view))) continue;
    raise(w, view);
    auto* dock = w.findChild<QDockWidget*>(QString::fromLatin1(view));
    for (PlotWidget* p : dock->findChildren<PlotWidget*>()) {
      if (!p->isVisible()) continue;
      p->replot(QCustomPlot::rpImmediateRefresh);
      for (QCPAxisRect* r : p->axisRects()) {
        // A colour scale's own narrow axis rect is not a plot.
        bool scale = false;
        for (auto* e : p->plotLayout()->elements(true))
          if (auto* cs = qobject_cast<QCPColorScale*>(e)) scale = scale || cs->axis()->axisRect() == r;
        if (scale) continue;
        EXPECT_GE(r->width(), 250) << p->objectName().toStdString();
        EXPECT_GE(r->height(), 90) << p->objectName().toStdString();
      }
    }
  }
}

TEST_F(LayoutTest, HeatmapZoomsAlongTokensOnly) {
  MainWindow& w = window();
  w.resize(1920, 1080);
  ASSERT_TRUE(loadSyntheticCache());
  raise(w, "distributionsDock");
  PlotWidget* heatmap = w.distributionsPanel()->heatmapPlot();
  heatmap->replot(QCustomPlot::rpImmediateRefresh);
  const QCPRange x = heatmap->xAxis->range(), y = heatmap->yAxis->range();
  const QPoint centre = heatmap->axisRect()->center();
  QWheelEvent wheel(centre, heatmap->mapToGlobal(centre), QPoint(), QPoint(0, 480), Qt::NoButton,
                    Qt::NoModifier, Qt::NoScrollPhase, false);
  QApplication::sendEvent(heatmap, &wheel);
  EXPECT_LT(heatmap->xAxis->range().size(), x.size() * 0.9);
  EXPECT_EQ(heatmap->yAxis->range(), y);
}

}  // namespace
}  // namespace kvscope::gui
