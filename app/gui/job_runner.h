// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QObject>
#include <QString>
#include <QThreadPool>
#include <atomic>
#include <functional>
#include <memory>

#include "kvscope/common/progress.h"

namespace kvscope::gui {

/// The GUI's one background-job mechanism (hotspot's job tracker):
/// - start() bumps a generation counter and cancels the job before it, so at
///   most one job of a runner is current; results of older jobs are dropped;
/// - work runs on the runner's own worker thread, never on the GUI thread;
/// - its result is applied on the GUI thread by a queued call;
/// - cancel() makes the core's ProgressFn return false, so the core throws
///   Error(Cancelled) at its next check.
/// A window has one runner per independent pipeline (model/prefill, encode,
/// stream), so a re-encode never cancels a prefill.
class JobRunner : public QObject {
  Q_OBJECT

 public:
  /// Runs on the worker with a ProgressFn to pass to the core. Returns the
  /// continuation applied on the GUI thread if the job is still current.
  using Work = std::function<std::function<void()>(const ProgressFn& progress)>;

  explicit JobRunner(QString name, QObject* parent = nullptr);
  /// Cancels the current job and waits for the worker (the core stops at its
  /// next progress check).
  ~JobRunner() override;

  /// Starts `work` as the current job, cancelling any job before it.
  /// Returns the job's generation.
  quint64 start(const QString& title, Work work);
  /// Asks the current job to stop; emits cancelled() once it has.
  void cancel();
  bool busy() const { return running_ > 0; }
  quint64 generation() const { return generation_; }

 signals:
  void started(const QString& title);
  /// fraction in [0, 1]; coalesced to the GUI thread.
  void progress(double fraction, const QString& stage);
  void finished(const QString& title, double seconds);
  void failed(const QString& title, const QString& message);
  void cancelled(const QString& title);
  void busyChanged(bool busy);

 private:
  struct JobState {
    std::atomic<bool> cancel{false};
    std::atomic<bool> progress_pending{false};
    std::atomic<double> fraction{0};
  };
  QString name_;
  QThreadPool pool_;
  quint64 generation_ = 0;
  int running_ = 0;
  std::shared_ptr<JobState> current_;
};

}  // namespace kvscope::gui
