// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QWidget>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "kvscope/stream/ladder.h"
#include "kvscope/stream/profile.h"
#include "kvscope/stream/streamer.h"
#include "workspace.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace kvscope::eval {
struct QualityResult;
}

namespace kvscope::gui {

class JobRunner;
class LadderEditor;
class PlotWidget;
class QualityService;
class Session;
class StreamTimeline;
class WhenShown;

/// Streaming (core/stream), set up to teach:
/// - a scenario (resources/scenarios/*.kvscope: bandwidth trace, SLO, chunk
///   size, ladder) or each part by hand: trace presets, CSV import/export,
///   points dragged on the plot; SLO; chunk size; a shipped or edited ladder;
/// - Run streams the current cache with the real streamer: the adaptive
///   policy, then the fixed baselines fp16, int8 and text, on a simulated
///   clock (default; decode times modelled from measured per-token speeds,
///   text recompute charged at the prefill's measured rate) or over a real
///   TCP connection on 127.0.0.1;
/// - StreamTimeline shows the trace, the adaptive run's levels (hover: the
///   estimate and every level's predicted finish) and every policy's lane on
///   one time axis; the table adds, per policy, the quality of the cache it
///   delivered (KL, top-1, perplexity change) next to its time to load.
/// Chunks are encoded once per (cache, chunk size, level) and kept, so a new
/// trace or SLO never re-encodes.
class StreamPanel : public QWidget {
  Q_OBJECT

 public:
  /// Accepted SLO (seconds) and chunk size (tokens).
  static constexpr double kMinSlo = kMinSloSeconds, kMaxSlo = kMaxSloSeconds;

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
  /// Encodes the chunks ahead of a run while the view is on screen.
  JobRunner* prepareRunner() const { return prepare_runner_.get(); }
  /// The three time-aligned plots (bandwidth, adaptive level, policy lanes).
  StreamTimeline* timeline() const { return timeline_; }
  QTableWidget* table() const { return table_; }
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
  /// Applies the stream part of a validated workspace (profile, SLO, chunk
  /// size, ladder); a shipped ladder that no longer loads goes to `error`.
  void applyWorkspace(const Workspace& workspace, const std::function<void(const QString&)>& error);
  /// Shipped scenarios (resources/scenarios), by name; the default first.
  QStringList scenarios() const;
  /// Applies a shipped scenario; false (and `error`) when it does not load.
  bool setScenario(const QString& name, QString* error = nullptr);
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
  /// Decode rate (tokens/s) charged for every chunk of every level; 0 = the
  /// decode time measured for each chunk and level when it was encoded.
  void setDecodeRate(double tokens_per_s);
  /// Simulated clock (on by default) or the real transport.
  void setSimulated(bool on);
  /// Measures what each policy delivered with `service` (after each run).
  void setQualityService(QualityService* service);
  /// Wall seconds of the last run, from Run to the last report.
  double lastRunWallSeconds() const { return last_wall_s_; }

  /// The scenario a fresh window starts with.
  static constexpr const char* kDefaultScenario = "adaptive-vs-int8";

 signals:
  void finished();
  /// The quality of what `policy` delivered was added to the table.
  void qualityAdded(const QString& policy);
  void errorOccurred(const QString& title, const QString& message);

 private:
  void redrawProfile();
  bool loadLadderItem(int index, QString* error);
  void onEvent(const stream::StreamEvent& event, const QString& policy);
  void addReport(const stream::StreamReport& report);
  void onQuality(const QString& policy, const eval::QualityResult& result);
  bool eventFilter(QObject* watched, QEvent* event) override;
  /// The policies a run streams, in lane order.
  std::vector<std::pair<QString, stream::Policy>> policies() const;
  /// The store for the current cache and chunk size (created when needed).
  std::shared_ptr<stream::EncodedContext> currentStore();
  /// Encodes the chunks every policy needs in the background while the panel
  /// is on screen (else once it is), so Run only streams (the store keeps them).
  void prepareAhead();
  void startPrepare();

  Session* session_;
  WhenShown* when_shown_;
  QComboBox* scenario_;
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
  QDoubleSpinBox* decode_rate_;
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
  StreamTimeline* timeline_;
  QTableWidget* table_;
  stream::BandwidthProfile profile_;
  std::vector<stream::StreamReport> reports_;
  QualityService* quality_ = nullptr;
  /// What each policy of the running run delivered, measured when it ends.
  std::vector<std::pair<std::shared_ptr<const kv::KVCache>, QString>> pending_quality_;
  int drag_index_ = -1;
  double last_wall_s_ = 0;
  qint64 run_started_ms_ = 0;
  // Encoded chunks, kept across runs for the same cache and chunk size.
  std::shared_ptr<stream::EncodedContext> store_;
  std::unique_ptr<JobRunner> runner_;
  std::unique_ptr<JobRunner> prepare_runner_;
};

}  // namespace kvscope::gui
