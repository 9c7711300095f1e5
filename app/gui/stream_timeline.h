// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QStringList>
#include <functional>
#include <vector>

#include "kvscope/stream/profile.h"
#include "kvscope/stream/streamer.h"
#include "plot_widget.h"

namespace kvscope::gui {

/// The streaming run on one time axis, three plots stacked and aligned:
/// - bandwidth: the trace (Mbit/s) and, for the adaptive run, the throughput
///   estimate the policy used at each chunk;
/// - level: the adaptive run's chunks, one lane per ladder level (text on
///   top), each a bar from send start to arrival; hovering a chunk shows its
///   estimate and the finish predicted for every candidate level, the reason
///   for the choice;
/// - policies: every finished run (adaptive, then the baselines) as a lane of
///   chunk bars coloured by level, its time to load marked and judged
///   against the SLO, which crosses all three plots.
/// Panning or zooming one plot moves the others (one x range); double-click
/// returns to the view of the trace, every run and the SLO.
class StreamTimeline : public PlotWidget {
  Q_OBJECT

 public:
  explicit StreamTimeline(QWidget* parent = nullptr);

  QCPAxisRect* bandwidthRect() const { return rects_[0]; }
  QCPAxisRect* levelRect() const { return rects_[1]; }
  QCPAxisRect* lanesRect() const { return rects_[2]; }
  QCPAxis* bandwidthAxis() const { return rects_[0]->axis(QCPAxis::atLeft); }
  QCPAxis* levelAxis() const { return rects_[1]->axis(QCPAxis::atLeft); }
  QCPAxis* laneAxis() const { return rects_[2]->axis(QCPAxis::atLeft); }
  /// The shared time axis as each plot has it (index 0..2).
  QCPAxis* timeAxis(int plot) const { return rects_[std::size_t(plot)]->axis(QCPAxis::atBottom); }

  /// Draws the trace; per-chunk random traces show their first 16 chunks' rates.
  void setProfile(const stream::BandwidthProfile& profile);
  /// Pixel positions of the trace's points (for dragging), or empty.
  QCPGraph* traceGraph() const { return trace_; }
  /// Names the level lanes (fine at the bottom) with "text" above them, and clears runs.
  void setLevels(const QStringList& names);
  void setSlo(double seconds);
  double slo() const { return slo_; }
  /// Forgets every run.
  void clearRuns();
  /// Adds one chunk of the adaptive run as it arrives (live).
  void addAdaptiveChunk(const stream::ChunkRecord& chunk, double slo_s);
  /// Adds a finished run as the next lane; `verdict_suffix` is appended to its
  /// load-time label (e.g. its KL once measured).
  void addRun(const stream::StreamReport& report);
  /// Updates a lane's label (e.g. the quality it delivered).
  void setRunNote(int lane, const QString& note);
  int runCount() const { return int(runs_.size()); }
  /// Chunk records of the adaptive run shown in the level plot.
  const std::vector<stream::ChunkRecord>& adaptiveChunks() const { return adaptive_; }
  /// Hover text for the level plot at time `t`, lane `lane` (empty when no chunk there).
  QString chunkExplanation(double t, double lane) const;

 private:
  struct Run {
    stream::StreamReport report;
    QCPItemText* label = nullptr;
  };
  struct BarLabel {
    QCPItemText* text;
    QCPAxis* time;
    double start, end;
  };
  QCPItemRect* addBar(QCPAxisRect* rect, double start, double end, double lane, double half, int level,
                      const QString& label);
  void homeView();
  void fitLabels();

  std::vector<QCPAxisRect*> rects_;
  QCPGraph* trace_;
  QCPGraph* estimate_;
  std::vector<QCPItemStraightLine*> slo_lines_;
  QStringList levels_;
  std::vector<stream::ChunkRecord> adaptive_;
  std::vector<Run> runs_;
  std::vector<QCPAbstractItem*> run_items_;
  std::vector<BarLabel> bar_labels_;
  double slo_ = 1;
  double trace_end_ = 1;
  bool syncing_ = false;
};

}  // namespace kvscope::gui
