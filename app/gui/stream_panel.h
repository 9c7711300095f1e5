#pragma once

#include <QWidget>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "kvscope/stream/ladder.h"
#include "kvscope/stream/profile.h"
#include "kvscope/stream/streamer.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class QCPGraph;
class QCPItemStraightLine;

namespace kvscope::gui {

class JobRunner;
class LadderEditor;
class PlotWidget;
class Session;

/// Bandwidth & SLO and the streaming run (core/stream):
/// - a bandwidth profile (presets from resources/profiles, CSV import and
///   export) plotted as Mbit/s over time, whose points can be dragged;
/// - SLO, chunk size, and the level ladder: a shipped one from
///   resources/ladders or one edited in the LadderEditor (Edit...);
/// - Run streams the current cache with the real streamer (adaptive policy,
///   then the fixed baselines fp16, int8 and text) on a worker; the timeline
///   shows each chunk as a bar from send start to arrival in the lane of its
///   level, the decoded tokens over time and the SLO; Stop cancels.
/// Chunks are encoded once per (cache, chunk size, level) and kept, so a new
/// profile or SLO never re-encodes.
class StreamPanel : public QWidget {
  Q_OBJECT

 public:
  /// Accepted SLO (seconds) and chunk size (tokens).
  static constexpr double kMinSlo = 0.01, kMaxSlo = 3600;
  static constexpr int kMinChunkTokens = 16, kMaxChunkTokens = 65536;

  explicit StreamPanel(Session* session, QWidget* parent = nullptr);
  ~StreamPanel() override;

  void run();
  void stop();
  const stream::BandwidthProfile& profile() const { return profile_; }
  /// Uses a profile (from a preset, a file or an edit) and redraws it.
  void setProfile(const stream::BandwidthProfile& profile);
  bool loadProfileFile(const QString& path, QString* error);
  const std::vector<stream::StreamReport>& reports() const { return reports_; }
  JobRunner* runner() const { return runner_.get(); }
  PlotWidget* timelinePlot() const { return timeline_; }
  /// Every finished run of the last Run side by side: one lane per policy
  /// (adaptive on top, then the fixed baselines), chunks as bars from send
  /// start to arrival coloured by level, each run's time to load marked, and
  /// the SLO across all lanes.
  PlotWidget* comparisonPlot() const { return comparison_; }
  PlotWidget* profilePlot() const { return profile_plot_; }
  void setSlo(double seconds);
  double slo() const;
  void setChunkTokens(int tokens);
  int chunkTokens() const;
  /// The ladder's display name: a file stem in resources/ladders, or
  /// "<name> (edited)" for one applied from the editor.
  QString ladder() const;
  /// Selects a shipped ladder by name; false if there is none of that name
  /// or it does not load.
  bool setLadder(const QString& name);
  /// The ladder the next run uses.
  const stream::Ladder& currentLadder() const { return ladder_; }
  /// Uses `ladder` (already validated, see validateLadder()): a shipped one
  /// when it equals the file of the same name, else shown as edited.
  void setLadder(const stream::Ladder& ladder);
  /// Opens the ladder editor on the current ladder (created on first use).
  LadderEditor* editLadder();
  /// Runs only the adaptive policy (baselines off); for tests.
  void setRunBaselines(bool on);
  /// Where runs load the chunks from: "memory:" (published in this process;
  /// real mode through an in-process sender) or a chunk store spec
  /// (dir:PATH, redis://HOST:PORT[,...], tcp://HOST:PORT; docs/streaming.md).
  void setStoreSpec(const QString& spec);
  QString storeSpec() const;
  /// Recompute rate (tokens/s) charged for text chunks and the query; 0 =
  /// measured with the model on this machine at each Run.
  void setRecomputeRate(double tokens_per_s);

 signals:
  void finished();
  void errorOccurred(const QString& title, const QString& message);

 private:
  void redrawProfile();
  bool loadLadderItem(int index, QString* error);
  void clearTimeline();
  void onEvent(const stream::StreamEvent& event, const QString& policy);
  void addReport(const stream::StreamReport& report);
  void clearComparison();
  void drawComparisonLane(const stream::StreamReport& report, int lane);
  bool eventFilter(QObject* watched, QEvent* event) override;

  Session* session_;
  QComboBox* preset_;
  QDoubleSpinBox* slo_;
  QSpinBox* chunk_tokens_;
  QComboBox* ladder_combo_;
  stream::Ladder ladder_;
  LadderEditor* ladder_editor_ = nullptr;
  QDoubleSpinBox* time_scale_;
  QCheckBox* simulate_;
  QCheckBox* baselines_;
  QComboBox* store_spec_;
  QDoubleSpinBox* recompute_rate_;
  /// The recompute rate measured with a model (on a worker; kept across runs).
  struct RateCache {
    std::mutex mutex;
    const void* model = nullptr;
    std::optional<stream::RecomputeRate> rate;
  };
  std::shared_ptr<RateCache> rate_cache_ = std::make_shared<RateCache>();
  QPushButton* run_;
  QPushButton* stop_;
  QProgressBar* progress_;
  QLabel* status_;
  PlotWidget* profile_plot_;
  QCPGraph* profile_graph_;
  PlotWidget* timeline_;
  QCPGraph* decoded_graph_;
  QCPGraph* bandwidth_graph_;
  QCPItemStraightLine* slo_line_;
  PlotWidget* comparison_;
  QCPItemStraightLine* comparison_slo_;
  QTableWidget* table_;
  stream::BandwidthProfile profile_;
  std::vector<stream::StreamReport> reports_;
  int drag_index_ = -1;
  int decoded_tokens_ = 0;
  int text_lane_ = 8;  ///< timeline lane of chunks sent as text: above the ladder's levels
  QString live_policy_;
  // Encoded chunks, kept across runs for the same cache and chunk size.
  std::shared_ptr<stream::EncodedContext> store_;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace kvscope::gui
