// SPDX-License-Identifier: GPL-3.0-or-later
#include "job_runner.h"

#include <QElapsedTimer>
#include <QMetaObject>
#include <exception>

#include "kvscope/common/error.h"

namespace kvscope::gui {

JobRunner::JobRunner(QString name, QObject* parent) : QObject(parent), name_(std::move(name)) {
  // One worker: a newer job waits for the cancelled one to reach its next
  // progress check instead of competing with it for the (few) cores.
  pool_.setMaxThreadCount(1);
  pool_.setObjectName(name_);
}

JobRunner::~JobRunner() {
  if (current_) current_->cancel = true;
  pool_.clear();
  pool_.waitForDone();
}

quint64 JobRunner::start(const QString& title, Work work) {
  if (current_) current_->cancel = true;
  auto state = std::make_shared<JobState>();
  current_ = state;
  const quint64 gen = ++generation_;
  if (running_++ == 0) emit busyChanged(true);
  emit started(title);
  pool_.start([this, state, gen, title, work = std::move(work)] {
    // Everything posted back goes through a queued call on `this`; the
    // destructor waits for the pool, so `this` outlives the lambda.
    auto deliver = [this, gen, title](std::function<void()> apply, QString error, bool was_cancelled,
                                      double seconds) {
      QMetaObject::invokeMethod(
          this,
          [this, gen, title, apply = std::move(apply), error, was_cancelled, seconds] {
            const bool current = gen == generation_;
            if (--running_ == 0) emit busyChanged(false);
            if (!current) return;  // stale: a newer job replaced it
            if (was_cancelled) {
              emit cancelled(title);
            } else if (!error.isEmpty()) {
              emit failed(title, error);
            } else {
              if (apply) apply();
              emit finished(title, seconds);
            }
          },
          Qt::QueuedConnection);
    };
    if (state->cancel) {  // replaced before it began: skip the work entirely
      deliver({}, {}, true, 0);
      return;
    }
    ProgressFn report = [this, state, gen](double fraction, std::string_view stage) {
      if (state->cancel) return false;
      state->fraction = fraction;
      // At most one progress event in flight: a fast loop cannot flood the GUI.
      if (!state->progress_pending.exchange(true)) {
        QString text = QString::fromUtf8(stage.data(), static_cast<int>(stage.size()));
        QMetaObject::invokeMethod(
            this,
            [this, state, gen, text] {
              state->progress_pending = false;
              if (gen == generation_) emit progress(state->fraction.load(), text);
            },
            Qt::QueuedConnection);
      }
      return true;
    };
    QElapsedTimer timer;
    timer.start();
    try {
      auto apply = work(report);
      deliver(std::move(apply), {}, state->cancel.load(), timer.nsecsElapsed() / 1e9);
    } catch (const Error& e) {
      const bool was_cancelled = e.code() == ErrorCode::Cancelled || state->cancel;
      deliver({}, QString::fromUtf8(e.what()), was_cancelled, 0);
    } catch (const std::exception& e) {
      deliver({}, QString::fromUtf8(e.what()), state->cancel.load(), 0);
    }
  });
  return gen;
}

void JobRunner::cancel() {
  if (current_) current_->cancel = true;
}

}  // namespace kvscope::gui
