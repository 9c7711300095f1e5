// SPDX-License-Identifier: GPL-3.0-or-later
#include "job_runner.h"

#include <gtest/gtest.h>

#include <QSignalSpy>
#include <QTest>
#include <atomic>
#include <thread>

#include "kvscope/common/error.h"

namespace kvscope::gui {
namespace {

TEST(JobRunner, AppliesResultOnGuiThread) {
  JobRunner runner(QStringLiteral("t"));
  QSignalSpy finished(&runner, &JobRunner::finished);
  Qt::HANDLE applied_on = nullptr;
  Qt::HANDLE worked_on = nullptr;
  runner.start(QStringLiteral("job"), [&](const ProgressFn&) {
    worked_on = QThread::currentThreadId();
    return std::function<void()>([&] { applied_on = QThread::currentThreadId(); });
  });
  ASSERT_TRUE(finished.wait(5000));
  EXPECT_EQ(applied_on, QThread::currentThreadId());
  EXPECT_NE(worked_on, QThread::currentThreadId());
  EXPECT_FALSE(runner.busy());
}

TEST(JobRunner, DropsStaleResults) {
  JobRunner runner(QStringLiteral("t"));
  std::atomic<bool> release{false};
  int applied = 0;
  // The first job blocks until released; the second replaces it meanwhile.
  runner.start(QStringLiteral("old"), [&](const ProgressFn&) {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return std::function<void()>([&] { applied = 1; });
  });
  runner.start(QStringLiteral("new"),
               [&](const ProgressFn&) { return std::function<void()>([&] { applied = 2; }); });
  release = true;
  ASSERT_TRUE(QTest::qWaitFor([&] { return !runner.busy(); }, 5000));
  EXPECT_EQ(applied, 2);
}

TEST(JobRunner, CancelStopsWorkThroughProgress) {
  JobRunner runner(QStringLiteral("t"));
  QSignalSpy cancelled(&runner, &JobRunner::cancelled);
  QSignalSpy finished(&runner, &JobRunner::finished);
  std::atomic<bool> started{false};
  runner.start(QStringLiteral("long"), [&](const ProgressFn& progress) {
    started = true;
    for (int i = 0; i < 100000; ++i) {
      report_progress(progress, i / 100000.0, "step");  // throws Cancelled once cancel() was called
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return std::function<void()>();
  });
  ASSERT_TRUE(QTest::qWaitFor([&] { return started.load(); }, 5000));
  runner.cancel();
  ASSERT_TRUE(cancelled.wait(5000));
  EXPECT_EQ(finished.count(), 0);
}

TEST(JobRunner, ReportsErrors) {
  JobRunner runner(QStringLiteral("t"));
  QSignalSpy failed(&runner, &JobRunner::failed);
  runner.start(QStringLiteral("bad"), [](const ProgressFn&) -> std::function<void()> {
    throw Error(ErrorCode::Format, "x.bin", "bad magic");
  });
  ASSERT_TRUE(failed.wait(5000));
  EXPECT_TRUE(failed.at(0).at(1).toString().contains(QStringLiteral("x.bin")));
}

}  // namespace
}  // namespace kvscope::gui
