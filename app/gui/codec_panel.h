#pragma once

#include <QElapsedTimer>
#include <QWidget>
#include <functional>
#include <map>
#include <memory>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/stage_analysis.h"

class QComboBox;
class QLabel;
class QPushButton;
class QProgressBar;
class QCPBars;

namespace kvscope::gui {

class JobRunner;
class ParamEditor;
class PlotWidget;
class Session;

/// Codec tuning: a codec picker, a ParamEditor (controls generated from the
/// codec's own ParamSpecs: ranges, defaults, help as tooltips, one spin box
/// per layer group for the bins), and live readouts of
/// the real encoder's output. Every change re-encodes the cached KV on a
/// worker (the model is never rerun); results of superseded encodes are dropped.
class CodecPanel : public QWidget {
  Q_OBJECT

 public:
  explicit CodecPanel(Session* session, QWidget* parent = nullptr);
  ~CodecPanel() override;

  codec::CodecConfig config() const;
  /// Selects the codec and sets the given parameters (others keep their defaults).
  /// Unknown parameter names are ignored; returns false if the codec is unknown.
  bool setConfig(const codec::CodecConfig& config);
  /// Sets one parameter's control from its text form (an IntList takes the
  /// number of elements given); false if no such control or the text does not parse.
  bool setParam(const QString& name, const QString& value);

  /// The last encode of the current cache, or null.
  std::shared_ptr<const codec::EncodeResult> lastResult() const { return result_; }
  /// Stage analysis of the last encode (cachegen only), or null.
  std::shared_ptr<const codec::StageAnalysis> lastStages() const { return stages_; }
  QString sizeReadout() const;
  /// Milliseconds from the last parameter change to the redrawn readouts.
  double lastUpdateMs() const { return last_update_ms_; }
  JobRunner* runner() const { return runner_.get(); }
  PlotWidget* layerPlot() const { return layer_plot_; }
  PlotWidget* waterfallPlot() const { return waterfall_; }

 signals:
  /// Emitted on the GUI thread after a new encode result is shown.
  void encoded();
  void configChanged();
  void errorOccurred(const QString& message);

 private:
  void rebuildControls();
  void scheduleEncode();
  void showResult(std::shared_ptr<const codec::EncodeResult> result,
                  std::shared_ptr<const codec::StageAnalysis> stages, const kv::CacheShape& shape);

  Session* session_;
  QComboBox* codec_combo_;
  QLabel* codec_help_;
  ParamEditor* params_;
  QLabel* readout_;
  QLabel* timing_;
  QProgressBar* progress_;
  PlotWidget* waterfall_;
  PlotWidget* layer_plot_;
  QCPBars* k_bars_;
  QCPBars* v_bars_;
  QCPBars* stage_bars_;
  std::shared_ptr<const codec::EncodeResult> result_;
  QString built_codec_;
  kv::CacheShape built_geometry_;  ///< layers, kv_heads, head_dim the controls were built for
  std::shared_ptr<const codec::StageAnalysis> stages_;
  QElapsedTimer change_timer_;
  double last_update_ms_ = 0;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace kvscope::gui
