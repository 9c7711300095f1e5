// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QStringList>
#include <QWidget>
#include <functional>
#include <memory>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/transform_plan.h"

class QComboBox;
class QLabel;
class QPushButton;
class QSpinBox;
class QCPBars;
class QCPGraph;

namespace kvscope::gui {

class JobRunner;
class PlotWidget;
class Session;
class WhenShown;

/// Teaching view of the `transform` codec ("energy compaction"): for a chosen
/// layer, K or V and basis group, the variance of each PCA component (the
/// calibrated basis's and this cache's, log scale) with the water level the
/// bit budget sets, and the bits each component gets (zero below the water
/// level). Computed by core/codec's plan_transform() with the codec panel's
/// settings when its codec is `transform` (else the transform defaults, said
/// on screen), on a worker: it projects the whole cache, so it runs only
/// while the view is on screen (a hidden view catches up when shown).
class SpectrumPanel : public QWidget {
  Q_OBJECT

 public:
  SpectrumPanel(Session* session, std::function<codec::CodecConfig()> config, QWidget* parent = nullptr);
  ~SpectrumPanel() override;

  /// The last plan shown (null before the first one or after a failure).
  std::shared_ptr<const codec::transform::TransformPlan> plan() const { return plan_; }
  PlotWidget* spectrumPlot() const { return spectrum_; }
  PlotWidget* bitsPlot() const { return bits_; }
  QString summary() const;
  JobRunner* runner() const { return runner_.get(); }
  /// Chooses what to show; values are clamped to the plan.
  void setSelection(int layer, int kind, int group);

 public slots:
  /// Recomputes the plan (call when the cache or the codec settings change):
  /// now if the view is on screen, else once it is.
  void refresh();
  /// Builds one calibration file from the current cache into the default
  /// calibration folder, on a worker (kvscope/codec/calibration_builder.h):
  /// the transform bases (keys before RoPE); cachegen's channel weighting
  /// (key power 0.5, values unweighted) from the channel weights the
  /// prefill measured (none for a cache opened from a file); and cachegen's
  /// symbol tables counted on this cache at the codec panel's cachegen
  /// settings (cachegen's defaults while another codec is shown; none with
  /// delta_mode=float, which has no calibrated tables), weighted as encoders
  /// weight them. Emits calibrated() with its path and the sections written,
  /// or calibrationFailed().
  void calibrateFromCache();

 signals:
  void planned();
  /// A calibration file was written (calibrateFromCache()); `sections` are
  /// its section names (docs/bitstream.md section 4).
  void calibrated(const QString& path, const QStringList& sections);
  void calibrationFailed(const QString& message);

 private:
  /// Whether the planned parameters ask for query weighting of keys.
  bool weightingRequested() const;
  void redraw();
  void startPlan();

  Session* session_;
  WhenShown* when_shown_;
  std::function<codec::CodecConfig()> config_;
  std::unique_ptr<JobRunner> runner_;
  std::unique_ptr<JobRunner> calibration_runner_;  // its own: a new plan does not cancel it
  std::shared_ptr<const codec::transform::TransformPlan> plan_;
  QString settings_note_;
  std::weak_ptr<const kv::KVCache> planned_cache_;
  codec::ParamSet planned_params_;
  QSpinBox* layer_;
  QComboBox* kind_;
  QSpinBox* group_;
  QPushButton* calibrate_;
  QLabel* summary_;
  PlotWidget* spectrum_;
  PlotWidget* bits_;
  QCPGraph* basis_graph_;
  QCPGraph* cache_graph_;
  QCPGraph* water_;  ///< per component: the distortion its step leaves, step^2 / 12
  QCPBars* bits_bars_;
  bool updating_ = false;
};

}  // namespace kvscope::gui
