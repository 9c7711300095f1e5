#pragma once

#include <QWidget>
#include <functional>
#include <memory>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/eval/quality.h"

class QLabel;
class QProgressBar;
class QPushButton;
class QTableWidget;
class QCPGraph;

namespace kvscope::gui {

class JobRunner;
class PlotWidget;
class Session;

/// Quality on demand (core/eval): the model continues from the decoded cache
/// and from the original, and the panel shows the size-vs-quality curve of
/// every evaluated configuration with the current one marked, plus a table.
/// Runs on its own worker with progress and Cancel; the reference (prefill
/// of the context and its continuation) is computed once per model and context.
class QualityPanel : public QWidget {
  Q_OBJECT

 public:
  /// `current_config` returns the codec panel's configuration.
  QualityPanel(Session* session, std::function<codec::CodecConfig()> current_config,
               QWidget* parent = nullptr);
  ~QualityPanel() override;

  /// Evaluates the current configuration.
  void evaluateCurrent();
  /// Evaluates every codec at its defaults plus the current configuration.
  void sweepCodecs();
  const std::vector<eval::QualityResult>& results() const { return results_; }
  JobRunner* runner() const { return runner_.get(); }
  PlotWidget* curvePlot() const { return plot_; }
  /// Re-marks the current configuration on the curve.
  void markCurrent();

 signals:
  void evaluated();

 private:
  void run(const QString& title, std::vector<codec::CodecConfig> configs);
  void addResults(const std::vector<eval::QualityResult>& results);
  void redraw();

  Session* session_;
  std::function<codec::CodecConfig()> current_config_;
  QPushButton* evaluate_;
  QPushButton* sweep_;
  QPushButton* cancel_;
  QProgressBar* progress_;
  QLabel* status_;
  PlotWidget* plot_;
  QCPGraph* points_;
  QCPGraph* current_;
  QTableWidget* table_;
  std::vector<eval::QualityResult> results_;
  // The evaluator keeps its references (one prefill per context); it belongs to one model.
  std::shared_ptr<eval::Evaluator> evaluator_;
  std::shared_ptr<ProgressFn> progress_slot_;
  const void* evaluator_model_ = nullptr;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace kvscope::gui
