// SPDX-License-Identifier: GPL-3.0-or-later
#include "timing_report.h"

#include <QApplication>
#include <QDockWidget>
#include <QTimer>
#include <algorithm>
#include <cstdio>
#include <memory>

#include "distributions_panel.h"
#include "job_runner.h"
#include "main_window.h"
#include "session.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "codec_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_STREAM
#include "stream_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_EVAL
#include "quality_service.h"
#include "rd_panel.h"
#endif

namespace kvscope::gui {

namespace {

void print(const QString& line) {
  std::printf("%s\n", line.toUtf8().constData());
  std::fflush(stdout);
}

// The median of the values >= 0, or -1 when there are none.
double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return x < 0; }), v.end());
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

QString value(double v, int digits) {
  return v < 0 ? QStringLiteral("na") : QString::number(v, 'f', digits);
}

// Pause between one retune's quality and the next change: the app is idle again.
constexpr int kRetunePauseMs = 500;

}  // namespace

TimingReport::TimingReport(MainWindow* window, const QElapsedTimer& launch, const Options& options)
    : QObject(window), window_(window), launch_(launch), options_(options), watchdog_(new QTimer(this)) {
  watchdog_->setSingleShot(true);
  connect(watchdog_, &QTimer::timeout, this, [this] { finish(QStringLiteral("timed out")); });
  arm(180);
  connect(window_->distributionsPanel(), &DistributionsPanel::redrawn, this, &TimingReport::checkReady);
  connect(window_->session(), &Session::modelChanged, this, [this] {
    if (model_s_ < 0 && window_->session()->hasModel()) model_s_ = now();
    maybeSettled();
  });
  // A job's result is applied after busyChanged(false): look once it is.
  connect(window_->modelJobs(), &JobRunner::busyChanged, this,
          [this] { QTimer::singleShot(0, this, &TimingReport::maybeSettled); });
#if KVSCOPE_GUI_HAVE_CODECS
  CodecPanel* codec = window_->codecPanel();
  connect(codec, &CodecPanel::estimated, this, [this] {
    estimate_drawn_ = true;
    checkReady();
  });
  connect(codec, &CodecPanel::encoded, this, [this] {
    if (phase_ == Phase::Retuning) {
      onEncoded();
      return;
    }
    exact_drawn_ = true;
    checkReady();
  });
#else
  exact_drawn_ = estimate_drawn_ = true;
#endif
#if KVSCOPE_GUI_HAVE_EVAL
  connect(window_->qualityService(), &QualityService::liveResult, this, [](const eval::QualityResult& r) {
    std::printf("quality %s: KL %.3g [%.3g, %.3g], top-1 %.1f%%, dppl %+.2f%% (%.2f s)\n",
                r.config.codec.c_str(), r.kl, r.intervals.kl.lo, r.intervals.kl.hi, 100 * r.top1_agreement,
                r.delta_ppl_pct, r.eval_seconds);
    std::fflush(stdout);
  });
  connect(codec, &CodecPanel::qualityShown, this, [this] {
    if (phase_ == Phase::Settling && window_->session()->hasModel()) {
      if (first_quality_s_ < 0) first_quality_s_ = now();
      maybeSettled();
    } else if (phase_ == Phase::Retuning) {
      onQualityShown();
    }
  });
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  connect(window_->streamPanel(), &StreamPanel::finished, this, [this] {
    if (phase_ != Phase::Stream) return;
    for (const auto& r : window_->streamPanel()->reports()) {
      std::string levels;
      for (const auto& c : r.chunks) levels += (levels.empty() ? "" : " ") + c.level_name;
      std::printf("stream %s: %.3f s to load (SLO %.2f s, %s), %.2f MB; %s\n", r.policy.c_str(), r.ttft_s,
                  r.slo_s, r.slo_met ? "met" : "missed", double(r.bytes_sent) / 1e6, levels.c_str());
    }
    stream_wall_s_ = window_->streamPanel()->lastRunWallSeconds();
    std::printf("stream: done, %.2f s wall for %zu run(s)\n", stream_wall_s_,
                window_->streamPanel()->reports().size());
    std::fflush(stdout);
    if (options_.measure_rd)
      startRd();
    else
      finish();
  });
#endif
}

void TimingReport::arm(int seconds) {
  watchdog_->start(seconds * 1000);
}

void TimingReport::checkReady() {
  if (phase_ != Phase::Launch || !window_->distributionsPanel()->stats()) return;
  if (first_view_s_ < 0 && (estimate_drawn_ || exact_drawn_)) first_view_s_ = now();
  if (!exact_drawn_) return;
  first_plot_s_ = now();
  const auto cache = window_->session()->cache();
  print(QStringLiteral("ready: first plot %1 s after launch (%2 tokens, %3); first view %4 s")
            .arg(first_plot_s_, 0, 'f', 2)
            .arg(cache ? cache->shape().tokens : 0)
            .arg(window_->session()->hasModel() ? QStringLiteral("model loaded")
                                                : QStringLiteral("kept prefill, model still loading"))
            .arg(first_view_s_, 0, 'f', 2));
  phase_ = Phase::Settling;
  arm(180);
  maybeSettled();
}

void TimingReport::maybeSettled() {
  if (phase_ != Phase::Settling) return;
#if KVSCOPE_GUI_HAVE_EVAL
  // Settled: the quality of the starting settings is shown with the model,
  // or there is no model to wait for.
  const bool no_model_coming = !window_->session()->hasModel() && !window_->modelJobs()->busy();
  if (first_quality_s_ < 0 && !no_model_coming) return;
#endif
  QTimer::singleShot(kRetunePauseMs, this, &TimingReport::startRetunes);
  phase_ = Phase::Retuning;
  arm(180);
}

void TimingReport::startRetunes() {
#if KVSCOPE_GUI_HAVE_CODECS
  // Coarser and finer first-layer key bins, each new, then back to the start
  // (kind Bins); then a change every stream feels (group_size) and its undo.
  const codec::CodecConfig config = window_->codecPanel()->config();
  const auto bins = config.params.find("key_bins");
  if (config.codec == "cachegen" && bins != config.params.end()) {
    const QStringList start = QString::fromStdString(bins->second).split(QLatin1Char(','));
    const int b = start.value(0).toInt();
    for (const double f : {2.0, 1.5, 0.75, 1.25, 1.0}) {
      QStringList next = start;
      next[0] = QString::number(std::clamp(int(b * f), 4, 256));
      const QString v = next.join(QLatin1Char(','));
      if (plan_.empty() || plan_.back().value != v)
        plan_.push_back({Kind::Bins, QStringLiteral("key_bins"), v});
    }
    if (const auto group = config.params.find("group_size"); group != config.params.end()) {
      const QString was = QString::fromStdString(group->second);
      plan_.push_back({Kind::AllStreams, QStringLiteral("group_size"), QString::number(was.toInt() + 2)});
      plan_.push_back({Kind::Undo, QStringLiteral("group_size"), was});
    }
  }
#endif
  nextRetune();
}

void TimingReport::nextRetune() {
#if KVSCOPE_GUI_HAVE_CODECS
  if (retunes_.size() < plan_.size()) {
    CodecPanel* codec = window_->codecPanel();
    const Step& step = plan_[retunes_.size()];
    Retune r;
    r.kind = step.kind;
#if KVSCOPE_GUI_HAVE_EVAL
    codec::CodecConfig next = codec->config();
    next.params[step.param.toStdString()] = step.value.toStdString();
    r.quality_known = window_->qualityService()->known(next).has_value();
#endif
    retunes_.push_back(r);
    retune_encoded_ = false;
    arm(180);
    retune_timer_.start();
    codec->setParam(step.param, step.value);
    return;
  }
#endif
  afterRetunes();
}

void TimingReport::onEncoded() {
#if KVSCOPE_GUI_HAVE_CODECS
  if (retunes_.empty() || retune_encoded_) return;
  CodecPanel* codec = window_->codecPanel();
  Retune& r = retunes_.back();
  r.first_view_ms = codec->lastUpdateMs();
  r.exact_ms = codec->exactUpdateMs();
  r.estimate = r.first_view_ms < r.exact_ms - 0.05;
  retune_encoded_ = true;
  print(QStringLiteral("re-encode + redraw: %1 ms (%2; %3)")
            .arg(r.first_view_ms, 0, 'f', 1)
            .arg(QString::fromStdString(codec->config().codec), codec->timingBreakdown()));
#if !KVSCOPE_GUI_HAVE_EVAL
  QTimer::singleShot(kRetunePauseMs, this, &TimingReport::nextRetune);
#endif
#endif
}

void TimingReport::onQualityShown() {
  if (retunes_.empty() || !retune_encoded_ || retunes_.back().quality_s >= 0) return;
  Retune& r = retunes_.back();
  r.quality_s = retune_timer_.nsecsElapsed() / 1e9;
  const Step& step = plan_[retunes_.size() - 1];
  print(QStringLiteral("retune %1 (%7=%8): first view %2 ms (%3), exact %4 ms, quality shown after %5 s%6")
            .arg(retunes_.size())
            .arg(r.first_view_ms, 0, 'f', 1)
            .arg(r.estimate ? QStringLiteral("estimate") : QStringLiteral("exact"))
            .arg(r.exact_ms, 0, 'f', 1)
            .arg(r.quality_s, 0, 'f', 2)
            .arg(r.quality_known ? QStringLiteral(" (known)") : QString(),
                 step.kind == Kind::Bins ? step.param + QStringLiteral("[0]") : step.param,
                 step.kind == Kind::Bins ? step.value.section(QLatin1Char(','), 0, 0) : step.value));
  QTimer::singleShot(kRetunePauseMs, this, &TimingReport::nextRetune);
}

void TimingReport::afterRetunes() {
#if KVSCOPE_GUI_HAVE_STREAM
  if (options_.run_stream) {
    startStream();
    return;
  }
#endif
  if (options_.measure_rd) {
    startRd();
    return;
  }
  finish();
}

void TimingReport::startStream() {
#if KVSCOPE_GUI_HAVE_STREAM
  // As a user does: pick the Streaming tab (its chunks are encoded in the
  // background while it is shown), then Run once that is done.
  phase_ = Phase::Stream;
  arm(300);
  StreamPanel* stream = window_->streamPanel();
  if (auto* dock = window_->findChild<QDockWidget*>(QStringLiteral("streamDock"))) {
    dock->show();
    dock->raise();
  }
  prepare_timer_.start();
  auto poll = std::make_shared<std::function<void()>>();
  *poll = [this, stream, poll] {
    if (stream->prepareRunner()->busy() && prepare_timer_.elapsed() < 120000) {
      QTimer::singleShot(50, this, *poll);
      return;
    }
    stream_prepare_s_ = prepare_timer_.nsecsElapsed() / 1e9;
    stream->run();
    *poll = nullptr;  // breaks the cycle
  };
  QTimer::singleShot(100, this, *poll);
#endif
}

void TimingReport::startRd() {
#if KVSCOPE_GUI_HAVE_EVAL
  // Every codec at its defaults, then a key_bins sweep of cachegen.
  phase_ = Phase::Rd;
  arm(600);
  RdPanel* rd = window_->rdPanel();
  QualityService* quality = window_->qualityService();
  rd->measureDefaults();
  auto first = std::make_shared<QMetaObject::Connection>();
  *first = connect(quality, &QualityService::sweepFinished, this, [this, rd, quality, first] {
    disconnect(*first);
    print(QStringLiteral("rate-distortion: %1 point(s)").arg(rd->points().size()));
    auto second = std::make_shared<QMetaObject::Connection>();
    *second = connect(quality, &QualityService::sweepFinished, this, [this, rd, second] {
      disconnect(*second);
      print(QStringLiteral("rate-distortion: %1 point(s)").arg(rd->points().size()));
      print(QStringLiteral("rate-distortion sweep: done"));
      finish();
    });
    rd->addSweep(QStringLiteral("cachegen"), QStringLiteral("key_bins"),
                 {QStringLiteral("8,12,12"), QStringLiteral("12,16,16"), QStringLiteral("16,24,24"),
                  QStringLiteral("24,32,32"), QStringLiteral("32,48,48")});
  });
#else
  finish();
#endif
}

QString TimingReport::summary() const {
  std::vector<double> first_view, exact, quality, all_streams, undo;
  for (const Retune& r : retunes_) {
    const double view = r.first_view_ms > 0 ? r.first_view_ms : -1;
    if (r.kind == Kind::AllStreams) all_streams.push_back(view);
    if (r.kind == Kind::Undo) undo.push_back(view);
    if (r.kind != Kind::Bins) continue;
    first_view.push_back(view);
    exact.push_back(r.exact_ms > 0 ? r.exact_ms : -1);
    if (!r.quality_known) quality.push_back(r.quality_s);
  }
  QString s =
      QStringLiteral(
          "timing: first_view_s=%1 first_plot_s=%2 model_s=%3 first_quality_s=%4 retunes=%5 "
          "retune_first_view_ms=%6 retune_first_view_max_ms=%7 retune_exact_ms=%8 retune_quality_s=%9 "
          "retune_all_streams_first_view_ms=%10 undo_first_view_ms=%11 stream_prepare_s=%12 "
          "stream_wall_s=%13")
          .arg(value(first_view_s_, 2), value(first_plot_s_, 2), value(model_s_, 2),
               value(first_quality_s_, 2))
          .arg(first_view.size())
          .arg(value(median(first_view), 1),
               value(first_view.empty() ? -1 : *std::max_element(first_view.begin(), first_view.end()), 1),
               value(median(exact), 1), value(median(quality), 2), value(median(all_streams), 1))
          .arg(value(median(undo), 1), value(stream_prepare_s_, 2), value(stream_wall_s_, 2));
  if (!incomplete_.isEmpty()) s += QStringLiteral(" incomplete=%1").arg(incomplete_);
  return s;
}

void TimingReport::finish(const QString& why) {
  if (phase_ == Phase::Done) return;
  if (!why.isEmpty()) {
    static const char* const names[] = {"launch", "settling", "retuning", "stream", "rd", "done"};
    incomplete_ = QStringLiteral("%1_%2").arg(why).arg(QString::fromLatin1(names[int(phase_)]));
    incomplete_.replace(QLatin1Char(' '), QLatin1Char('_'));
  }
  phase_ = Phase::Done;
  watchdog_->stop();
  print(summary());
  emit done();
  if (options_.quit_when_done) QTimer::singleShot(0, qApp, &QCoreApplication::quit);
}

}  // namespace kvscope::gui
