#include "plot_widget.h"

#include <gtest/gtest.h>

#include <QFile>
#include <QTemporaryDir>
#include <QTest>

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
