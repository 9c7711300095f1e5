// SPDX-License-Identifier: GPL-3.0-or-later
#include "plot_widget.h"

#include <gtest/gtest.h>

#include <QFile>
#include <QFontMetricsF>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>
#include <string>

#include "plot_checks.h"

namespace kvscope::gui {
namespace {

PlotWidget* makePlot() {
  auto* plot = new PlotWidget;
  plot->resize(400, 300);
  QCPGraph* g = plot->addGraph();
  g->setName(QStringLiteral("line"));
  g->setData({0, 1, 2, 3}, {0, 1, 4, 9});
  plot->refresh(true);
  return plot;
}

TEST(PlotWidget, ExportsImagesAndCsv) {
  std::unique_ptr<PlotWidget> plot(makePlot());
  QTemporaryDir dir;
  for (const char* name : {"p.png", "p.svg", "p.pdf"}) {
    const QString path = dir.filePath(QString::fromLatin1(name));
    QString error;
    EXPECT_TRUE(plot->exportImage(path, &error)) << error.toStdString();
    EXPECT_GT(QFileInfo(path).size(), 100) << name;
  }
  QString error;
  EXPECT_FALSE(plot->exportImage(dir.filePath(QStringLiteral("p.bmpx")), &error));
  EXPECT_TRUE(error.contains(QStringLiteral("p.bmpx")));
  ASSERT_TRUE(plot->exportCsv(dir.filePath(QStringLiteral("p.csv"))));
  QFile csv(dir.filePath(QStringLiteral("p.csv")));
  ASSERT_TRUE(csv.open(QIODevice::ReadOnly));
  const QString text = QString::fromUtf8(csv.readAll());
  EXPECT_TRUE(text.contains(QStringLiteral("# line")));
  EXPECT_TRUE(text.contains(QStringLiteral("3,9")));
}

TEST(PlotWidget, KeepsUserZoomUntilReset) {
  std::unique_ptr<PlotWidget> plot(makePlot());
  plot->show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(plot.get()));
  const QPoint centre = plot->axisRect()->center();
  QWheelEvent wheel(centre, plot->mapToGlobal(centre), QPoint(), QPoint(0, 240), Qt::NoButton, Qt::NoModifier,
                    Qt::NoScrollPhase, false);
  QApplication::sendEvent(plot.get(), &wheel);
  ASSERT_TRUE(plot->userZoomed());
  const QCPRange zoomed = plot->xAxis->range();
  plot->graph(0)->setData({0, 10}, {0, 100});
  plot->refresh(true);
  EXPECT_EQ(plot->xAxis->range(), zoomed);  // new data, same view
  QTest::mouseDClick(plot.get(), Qt::LeftButton, Qt::NoModifier, centre);
  EXPECT_FALSE(plot->userZoomed());
  EXPECT_NEAR(plot->xAxis->range().upper, 10, 1e-9);
}

TEST(PlotWidget, FollowsDarkPalette) {
  std::unique_ptr<PlotWidget> plot(makePlot());
  QPalette dark = plot->palette();
  dark.setColor(QPalette::Base, QColor(20, 20, 20));
  dark.setColor(QPalette::Text, QColor(230, 230, 230));
  plot->setPalette(dark);
  EXPECT_TRUE(plot->darkBackground());
  EXPECT_EQ(plot->xAxis->tickLabelColor(), QColor(230, 230, 230));
}

}  // namespace
}  // namespace kvscope::gui

namespace kvscope::gui {

namespace {

// Issue 8: tick labels overlapped in the heatmap (token axis) and the stage
// waterfall (text labels) at small sizes.
TEST(PlotWidget, TickLabelsNeverOverlapAtAnySize) {
  PlotWidget plot;
  QCPGraph* g = plot.addGraph();
  g->setData({0, 123456.789}, {0, 98765432.1});
  plot.refresh(true);
  plot.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&plot));
  for (int w = 200; w <= 1800; w += 100) {
    plot.resize(w, w / 2);
    plot.replot(QCustomPlot::rpImmediateRefresh);
    for (QCPAxis* axis : {plot.xAxis, plot.yAxis}) {
      EXPECT_EQ(tickLabelOverlap(axis), "") << "width " << w;
      EXPECT_GE(visibleTicks(axis), 1) << "width " << w;
    }
    if (w >= 1000) {
      EXPECT_GE(visibleTicks(plot.xAxis), 5) << "a wide axis keeps several ticks";
    }
  }
  // Text labels (like the stage waterfall): flat when they fit, turned when not.
  PlotWidget bars;
  auto* b = new QCPBars(bars.xAxis, bars.yAxis);
  QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
  const QStringList names = {
      QStringLiteral("fp16"),          QStringLiteral("int8 baseline"),   QStringLiteral("quantized"),
      QStringLiteral("entropy (raw)"), QStringLiteral("entropy (delta)"), QStringLiteral("coded payload"),
      QStringLiteral("coded (all)")};
  QVector<double> keys, values;
  for (int i = 0; i < names.size(); ++i)
    ticker->addTick(i + 1, names[i]), keys << i + 1, values << 16.0 / (i + 1);
  b->setData(keys, values);
  bars.xAxis->setTicker(ticker);
  bars.refresh(true);
  bars.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&bars));
  for (int w : {200, 300, 450, 700, 1200, 1800}) {
    bars.resize(w, 300);
    bars.replot(QCustomPlot::rpImmediateRefresh);
    EXPECT_EQ(tickLabelOverlap(bars.xAxis), "") << "width " << w;
    EXPECT_EQ(visibleTicks(bars.xAxis), names.size()) << "every stage keeps its label";
  }
  EXPECT_EQ(bars.xAxis->tickLabelRotation(), 0) << "flat when there is room";
  bars.resize(200, 300);
  bars.replot(QCustomPlot::rpImmediateRefresh);
  EXPECT_NE(bars.xAxis->tickLabelRotation(), 0);
}

// Plots drawn with items (the streaming lanes) return to their home view on
// double-click like every other plot.
TEST(PlotWidget, DoubleClickReturnsToTheHomeView) {
  PlotWidget plot;
  plot.resize(400, 300);
  auto* rect = new QCPItemRect(&plot);
  rect->topLeft->setCoords(0, 0.4);
  rect->bottomRight->setCoords(3, -0.4);
  plot.setHomeView([&plot] {
    plot.xAxis->setRange(0, 4);
    plot.yAxis->setRange(-1, 1);
  });
  plot.resetView();
  plot.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&plot));
  const QPoint centre = plot.axisRect()->center();
  QWheelEvent wheel(centre, plot.mapToGlobal(centre), QPoint(), QPoint(0, 240), Qt::NoButton, Qt::NoModifier,
                    Qt::NoScrollPhase, false);
  QApplication::sendEvent(&plot, &wheel);
  ASSERT_TRUE(plot.userZoomed());
  ASSERT_NE(plot.xAxis->range(), QCPRange(0, 4));
  plot.refresh(true);  // new data keeps the zoom
  ASSERT_NE(plot.xAxis->range(), QCPRange(0, 4));
  QTest::mouseDClick(&plot, Qt::LeftButton, Qt::NoModifier, centre);
  EXPECT_FALSE(plot.userZoomed());
  EXPECT_EQ(plot.xAxis->range(), QCPRange(0, 4));
  EXPECT_EQ(plot.yAxis->range(), QCPRange(-1, 1));
}

// The per-layer size plot labelled layers 2.5, 7.5, ... (docs/screenshots/tuning.png):
// axes of layers, tokens and channels tick on whole numbers at every size.
TEST(PlotWidget, IntegerAxesTickOnWholeNumbers) {
  PlotWidget plot;
  PlotWidget::setIntegerTicks(plot.xAxis);
  auto* bars = new QCPBars(plot.xAxis, plot.yAxis);
  QVector<double> keys, values;
  for (int l = 0; l < 30; ++l) keys << l, values << 100 + l;
  bars->setData(keys, values);
  plot.refresh(true);
  plot.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&plot));
  for (int w = 200; w <= 1800; w += 200) {
    plot.resize(w, w / 2);
    plot.replot(QCustomPlot::rpImmediateRefresh);
    EXPECT_GE(visibleTicks(plot.xAxis), 2) << "width " << w;
    EXPECT_EQ(tickLabelOverlap(plot.xAxis), "") << "width " << w;
    for (double t : plot.xAxis->tickVector()) EXPECT_EQ(t, std::round(t)) << "width " << w;
  }
  plot.xAxis->setRange(0, 3);  // zoomed in: steps of 1, not 0.5
  plot.replot(QCustomPlot::rpImmediateRefresh);
  for (double t : plot.xAxis->tickVector()) EXPECT_EQ(t, std::round(t));
}

}  // namespace
}  // namespace kvscope::gui
