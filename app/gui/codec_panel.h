// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QElapsedTimer>
#include <QString>
#include <QWidget>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/stage_analysis.h"
#include "retune_estimate.h"

class QComboBox;
class QLabel;
class QPushButton;
class QProgressBar;
class QCPBars;

namespace kvscope::gui {

class JobRunner;
class ParamEditor;
class QualityService;
class QualityStrip;
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

  /// The last exact encode of the current cache, or null, and the settings
  /// it was made with (during a refine, the settings before the change).
  std::shared_ptr<const codec::EncodeResult> lastResult() const { return result_; }
  const codec::CodecConfig& lastResultConfig() const { return result_config_; }
  /// Stage analysis of the last encode (cachegen only), or null.
  std::shared_ptr<const codec::StageAnalysis> lastStages() const { return stages_; }
  QString sizeReadout() const;
  /// Milliseconds from the last parameter change to its first redrawn view
  /// (an estimate from a real encode of part of the cache, retune_estimate.h,
  /// else the exact result).
  double lastUpdateMs() const { return last_update_ms_; }
  /// Milliseconds from the last change to the exact result.
  double exactUpdateMs() const { return exact_update_ms_; }
  /// Large caches, when a change may touch every stream: encode kSubsetSpans
  /// spans of kSubsetSpanTokens first.
  static constexpr int kSubsetSpans = 4, kSubsetSpanTokens = 64;
  /// With a last exact encode to scale, a change every stream feels encodes
  /// only kSampledLayers layers (spread over the depth) of kSubsetSpans spans
  /// of kSampledSpanTokens, at the new and the last settings.
  static constexpr int kSampledLayers = 6, kSampledSpanTokens = 32;
  /// Exact encodes of the current cache kept, so undoing a change shows
  /// its result at once (a few MB each).
  static constexpr std::size_t kRememberedEncodes = 4;
  /// Turns the estimate-first view on or off (on by default).
  void setSubsetFirst(bool on) { subset_enabled_ = on; }
  /// Where lastUpdateMs() went: synchronous listeners of configChanged(), the
  /// encode (and stage analysis) on the worker, and the redraw.
  QString timingBreakdown() const;
  JobRunner* runner() const { return runner_.get(); }
  /// Encodes started since construction (each change starts one).
  int encodesStarted() const { return encodes_started_; }
  /// Measures quality after every change with `service` (core/eval): KL,
  /// top-1 and perplexity change with bootstrap intervals, shown under the size.
  void setQualityService(QualityService* service);
  /// The quality line as shown (rich text).
  QString qualityReadout() const;
  QualityStrip* qualityStrip() const { return strip_; }
  PlotWidget* layerPlot() const { return layer_plot_; }
  PlotWidget* waterfallPlot() const { return waterfall_; }

 signals:
  /// Emitted on the GUI thread after a new exact encode result is shown.
  void encoded();
  /// Emitted after a subset estimate was drawn (before encoded()).
  void estimated();
  void configChanged();
  void errorOccurred(const QString& message);
  /// The quality readout changed (a result, or why there is none).
  void qualityShown();

 private:
  void rebuildControls();
  void scheduleEncode();
  /// Shows an encode: exact (empty note), or an estimate drawn while the
  /// exact encode runs, `estimate_note` saying what it was made from.
  void showResult(std::shared_ptr<const codec::EncodeResult> result,
                  std::shared_ptr<const codec::StageAnalysis> stages, const kv::CacheShape& shape,
                  const QString& estimate_note);
  /// An exact encode of `cache` with `config` made recently, or null.
  const StagedEncode* rememberedEncode(const std::shared_ptr<const kv::KVCache>& cache,
                                       const codec::CodecConfig& config) const;
  void remember(const std::shared_ptr<const kv::KVCache>& cache, const codec::CodecConfig& config,
                const StagedEncode& encode);
  /// The token subset encoded first for `cache` (null when it is small enough to encode at once).
  std::shared_ptr<const kv::KVCache> subsetOf(const std::shared_ptr<const kv::KVCache>& cache);

  Session* session_;
  QComboBox* codec_combo_;
  QLabel* codec_help_;
  ParamEditor* params_;
  QLabel* readout_;
  QLabel* timing_;
  QLabel* quality_;
  QualityStrip* strip_;
  QualityService* quality_service_ = nullptr;
  std::map<QString, double> marks_;  ///< KL of codecs at their defaults, as measured
  QProgressBar* progress_;
  PlotWidget* waterfall_;
  PlotWidget* layer_plot_;
  QCPBars* k_bars_;
  QCPBars* v_bars_;
  QCPBars* stage_bars_;
  std::shared_ptr<const codec::EncodeResult> result_;
  codec::CodecConfig result_config_;
  std::weak_ptr<const kv::KVCache> result_cache_;                        ///< the cache result_ encodes
  bool result_coded_alone_ = false;                                      ///< layersCodedAlone(*result_)
  std::vector<std::pair<codec::CodecConfig, StagedEncode>> remembered_;  ///< newest first
  std::weak_ptr<const kv::KVCache> remembered_cache_;
  QString built_codec_;
  kv::CacheShape built_geometry_;  ///< layers, kv_heads, head_dim the controls were built for
  std::shared_ptr<const codec::StageAnalysis> stages_;
  QElapsedTimer change_timer_;
  double last_update_ms_ = 0, exact_update_ms_ = 0, exact_worker_ms_ = 0;
  bool first_view_pending_ = true;
  bool subset_enabled_ = true;
  std::shared_ptr<const kv::KVCache> subset_, subset_for_;
  int encodes_started_ = 0;
  double listeners_ms_ = 0, worker_ms_ = 0, redraw_ms_ = 0;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace kvscope::gui
