// SPDX-License-Identifier: GPL-3.0-or-later
// Views behind another tab do no work on a retune or a new cache, and catch
// up when their tab is picked (issue 21: a retune waited 335 ms for the
// pipeline trace of a tab nobody looked at, and the hidden streaming view
// encoded its whole ladder at launch beside the first encode).
#include "window_fixture.h"

#if KVSCOPE_GUI_HAVE_CODECS
#include <QDockWidget>

#include "distributions_panel.h"
#include "job_runner.h"
#include "on_screen.h"
#include "pipeline_panel.h"
#include "spectrum_panel.h"

namespace kvscope::gui {
namespace {

using LazyViews = WindowFixture;

QDockWidget* dock(MainWindow& window, const char* name) {
  return window.findChild<QDockWidget*>(QString::fromLatin1(name));
}

void raise(MainWindow& window, const char* name) {
  QDockWidget* d = dock(window, name);
  ASSERT_NE(d, nullptr) << name;
  d->show();
  d->raise();
  QApplication::processEvents();
}

// Qt keeps the docks behind another tab "visible" (isVisible() is true):
// only their empty visible region tells they cannot be seen.
TEST_F(LazyViews, RegressionDocksBehindATabCountedAsOnScreen) {
  MainWindow& w = window();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&w));
  raise(w, "distributionsDock");
  EXPECT_TRUE(isOnScreen(w.distributionsPanel()));
  EXPECT_FALSE(isOnScreen(w.pipelinePanel()));
  raise(w, "pipelineDock");
  EXPECT_TRUE(isOnScreen(w.pipelinePanel()));
  EXPECT_FALSE(isOnScreen(w.distributionsPanel()));
}

TEST_F(LazyViews, HiddenPipelineViewTracesOnlyOnceShown) {
  MainWindow& w = window();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&w));
  raise(w, "distributionsDock");
  PipelinePanel* pipe = w.pipelinePanel();
  QSignalSpy traced(pipe, &PipelinePanel::traced);
  ASSERT_FALSE(encodeAfter([&] { w.openCacheFile(syntheticCache()); }).isEmpty());
  QStringList bins =
      QString::fromStdString(w.codecPanel()->config().params.at("key_bins")).split(QLatin1Char(','));
  bins[0] = QStringLiteral("8");
  ASSERT_FALSE(encodeAfter([&] {
                 w.codecPanel()->setParam(QStringLiteral("key_bins"), bins.join(QLatin1Char(',')));
               }).isEmpty());
  EXPECT_EQ(traced.count(), 0) << "a hidden pipeline view traced";
  raise(w, "pipelineDock");
  ASSERT_TRUE(traced.count() > 0 || traced.wait(5000)) << "the pipeline view did not catch up when shown";
  EXPECT_EQ(traced.count(), 1);
  EXPECT_EQ(pipe->trace().bins, 8) << "traced the settings of the time it was hidden";
}

TEST_F(LazyViews, HiddenSpectrumViewPlansOnlyOnceShown) {
  MainWindow& w = window();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&w));
  raise(w, "distributionsDock");
  auto* spectrum = w.findChild<SpectrumPanel*>();
  ASSERT_NE(spectrum, nullptr);
  QSignalSpy started(spectrum->runner(), &JobRunner::started);
  ASSERT_FALSE(encodeAfter([&] { w.openCacheFile(syntheticCache()); }).isEmpty());
  EXPECT_EQ(started.count(), 0) << "a hidden spectrum view planned the transform";
  EXPECT_EQ(spectrum->plan(), nullptr);
  raise(w, "spectrumDock");
  EXPECT_TRUE(QTest::qWaitFor([spectrum] { return spectrum->plan() != nullptr; }, 30000));
}

#if KVSCOPE_GUI_HAVE_STREAM
TEST_F(LazyViews, HiddenStreamViewEncodesNoChunksAhead) {
  MainWindow& w = window();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&w));
  raise(w, "distributionsDock");
  StreamPanel* stream = w.streamPanel();
  QSignalSpy started(stream->prepareRunner(), &JobRunner::started);
  ASSERT_FALSE(encodeAfter([&] { w.openCacheFile(syntheticCache()); }).isEmpty());
  EXPECT_EQ(started.count(), 0) << "a hidden streaming view encoded chunks";
  raise(w, "streamDock");
  EXPECT_TRUE(started.count() > 0 || started.wait(5000))
      << "the streaming view did not prepare its chunks once shown";
}
#endif

}  // namespace
}  // namespace kvscope::gui
#endif
