// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QString>
#include <vector>

class QTimer;

namespace kvscope::gui {

class MainWindow;

/// The app's own speed report (`kvscope --timing`), printed to stdout as it
/// goes and as one machine-readable line at the end (docs/performance.md,
/// "The app"; scripts/bench-app.sh runs it). Everything is measured through
/// the paths the user's actions take:
/// - launch: the first view (the cache's statistics and a first codec view,
///   an estimate on a large cache) and the first plot (statistics and the
///   exact encode), in seconds since `launch` started;
/// - once the app has settled (model loaded and the quality of the starting
///   settings shown), retunes through the codec panel's setParam(), one after
///   another once the previous one's quality is shown: cachegen's first key
///   bin count five times (first redraw, exact result and quality), then
///   group_size (a change every stream feels) and its undo;
/// - then, when asked, a streaming run: the Streaming tab is raised, its
///   background encoding of the chunks awaited (stream_prepare_s), then Run
///   (stream_wall_s, its wall time); and a rate-distortion sweep.
/// Summary: "timing: key=value ..." with medians over the retunes; "na" for
/// what was not measured.
class TimingReport : public QObject {
  Q_OBJECT

 public:
  struct Options {
    bool run_stream = false;      ///< a streaming run after the retunes
    bool measure_rd = false;      ///< defaults + a key_bins sweep after that
    bool quit_when_done = false;  ///< QApplication::quit() after the summary
  };
  /// `launch` was started when the process began; the window must outlive this.
  TimingReport(MainWindow* window, const QElapsedTimer& launch, const Options& options);

  /// The summary line (also printed when everything ran).
  QString summary() const;

 signals:
  /// Everything asked for was measured (or timed out); the summary is printed.
  void done();

 private:
  /// Bins: one layer's key bins (the retunes the medians are over);
  /// AllStreams: a change every stream feels; Undo: back to settings just encoded.
  enum class Kind { Bins, AllStreams, Undo };
  struct Step {
    Kind kind;
    QString param, value;
  };
  struct Retune {
    Kind kind = Kind::Bins;
    double first_view_ms = 0, exact_ms = 0, quality_s = -1;
    bool estimate = false, quality_known = false;
  };
  double now() const { return launch_.nsecsElapsed() / 1e9; }
  void checkReady();
  void maybeSettled();
  void startRetunes();
  void nextRetune();
  void onEncoded();
  void onQualityShown();
  void afterRetunes();
  void startStream();
  void startRd();
  void finish(const QString& why = {});
  void arm(int seconds);

  MainWindow* window_;
  QElapsedTimer launch_;
  Options options_;
  QTimer* watchdog_;
  double first_view_s_ = -1, first_plot_s_ = -1, model_s_ = -1, first_quality_s_ = -1, stream_wall_s_ = -1,
         stream_prepare_s_ = -1;
  bool estimate_drawn_ = false, exact_drawn_ = false;
  enum class Phase { Launch, Settling, Retuning, Stream, Rd, Done } phase_ = Phase::Launch;
  std::vector<Step> plan_;
  std::vector<Retune> retunes_;
  QElapsedTimer retune_timer_, prepare_timer_;
  bool retune_encoded_ = false;
  QString incomplete_;
};

}  // namespace kvscope::gui
