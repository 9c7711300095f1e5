// SPDX-License-Identifier: GPL-3.0-or-later
// The app's own speed report (kvscope --timing): it drives real retunes
// through the codec panel and ends with one "timing:" line with a number for
// each measurement (here on a small cache without a model: no quality).
#include "window_fixture.h"

#if KVSCOPE_GUI_HAVE_CODECS
#include <QElapsedTimer>
#include <map>

#include "timing_report.h"

namespace kvscope::gui {
namespace {

using TimingReportTest = WindowFixture;

std::map<QString, QString> fields(const QString& line) {
  std::map<QString, QString> out;
  for (const QString& kv : line.split(QLatin1Char(' '), Qt::SkipEmptyParts)) {
    const qsizetype eq = kv.indexOf(QLatin1Char('='));
    if (eq > 0) out[kv.left(eq)] = kv.mid(eq + 1);
  }
  return out;
}

TEST_F(TimingReportTest, MeasuresLaunchAndRetunesInOneSummaryLine) {
  MainWindow& w = window();
  QElapsedTimer launch;
  launch.start();
  auto* report = new TimingReport(&w, launch, {});
  QSignalSpy done(report, &TimingReport::done);
  ASSERT_TRUE(loadSyntheticCache());
  const codec::CodecConfig start = w.codecPanel()->config();
  ASSERT_TRUE(done.count() > 0 || done.wait(60000)) << report->summary().toStdString();
  const QString line = report->summary();
  ASSERT_TRUE(line.startsWith(QStringLiteral("timing: "))) << line.toStdString();
  EXPECT_FALSE(line.contains(QStringLiteral("incomplete"))) << line.toStdString();
  auto f = fields(line);
  EXPECT_EQ(f[QStringLiteral("retunes")], QStringLiteral("5"));
  for (const char* key : {"first_view_s", "first_plot_s", "retune_first_view_ms", "retune_exact_ms",
                          "retune_all_streams_first_view_ms", "undo_first_view_ms"}) {
    bool ok = false;
    const double v = f[QString::fromLatin1(key)].toDouble(&ok);
    EXPECT_TRUE(ok && v > 0) << key << " in " << line.toStdString();
  }
  EXPECT_EQ(f[QStringLiteral("stream_wall_s")], QStringLiteral("na")) << "no stream run was asked for";
  // It ends on the settings the app started with.
  EXPECT_EQ(w.codecPanel()->config().params, start.params);
}

}  // namespace
}  // namespace kvscope::gui
#endif
