// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QWidget>
#include <memory>
#include <vector>

#include "kvscope/kv/kv_cache.h"
#include "kvscope/kv/stats.h"

class QComboBox;
class QSpinBox;
class QLabel;
class QCPColorMap;
class QCPColorScale;
class QCPBars;

namespace kvscope::gui {

class JobRunner;
class PlotWidget;
class Session;

/// How the cache is distributed, all computed by core/kv's compute_stats():
/// - histograms of one layer's K or V: raw values, deltas to the group's
///   anchor and deltas to the previous token, overlaid;
/// - a token-by-channel heatmap of one layer and KV head;
/// - per-layer summary bars (std, entropy at the chosen bins, outlier channels).
/// Statistics are recomputed on a worker when the cache or a statistics
/// parameter changes; plots keep the user's zoom.
class DistributionsPanel : public QWidget {
  Q_OBJECT

 public:
  explicit DistributionsPanel(Session* session, QWidget* parent = nullptr);
  ~DistributionsPanel() override;

  PlotWidget* heatmapPlot() const { return heatmap_; }
  PlotWidget* histogramPlot() const { return histogram_; }
  PlotWidget* summaryPlot() const { return summary_plot_; }
  JobRunner* runner() const { return runner_.get(); }
  /// Layer, kind (0 = K, 1 = V) and head shown.
  void setSelection(int layer, int kind, int head);
  /// Per-(layer, kind) entropies of the symbols the active codec codes, index
  /// layer * 2 + kind (cachegen's stage analysis: raw quantized values and
  /// anchor/delta symbols); empty when the codec has none. Drawn by the
  /// first two entropy metrics, so the bars predict coded bits.
  void setCodecStages(const std::vector<double>& raw, const std::vector<double>& delta);
  /// Statistics of the current cache, or null while none were computed.
  std::shared_ptr<const kv::CacheStats> stats() const { return stats_; }

 signals:
  /// Emitted after the plots were redrawn for a new cache, selection or statistics.
  void redrawn();

 private:
  void onCacheChanged();
  void recomputeStats();
  void redraw();
  void redrawHeatmap();
  void redrawStats();

  Session* session_;
  QSpinBox* layer_;
  QComboBox* kind_;
  QSpinBox* head_;
  QSpinBox* entropy_bins_;
  QSpinBox* group_size_;
  QComboBox* metric_;
  QLabel* summary_;
  PlotWidget* heatmap_;
  QCPColorMap* map_;
  QCPColorScale* scale_;
  PlotWidget* histogram_;
  PlotWidget* summary_plot_;
  QCPBars* k_bars_;
  QCPBars* v_bars_;
  std::shared_ptr<const kv::CacheStats> stats_;
  std::vector<double> codec_stages_raw_, codec_stages_delta_;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace kvscope::gui
