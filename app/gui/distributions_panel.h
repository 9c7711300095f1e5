#pragma once

#include <QWidget>
#include <memory>

#include "kvscope/kv/kv_cache.h"

class QComboBox;
class QSpinBox;
class QLabel;
class QCPColorMap;
class QCPColorScale;

namespace kvscope::gui {

class PlotWidget;
class Session;

/// How the cache is distributed: a token-by-channel heatmap of one layer and
/// head (K or V), so token locality and outlier channels are visible.
class DistributionsPanel : public QWidget {
  Q_OBJECT

 public:
  explicit DistributionsPanel(Session* session, QWidget* parent = nullptr);

  PlotWidget* heatmapPlot() const { return heatmap_; }
  /// Layer, kind (0 = K, 1 = V) and head shown.
  void setSelection(int layer, int kind, int head);

 signals:
  /// Emitted after the plots were redrawn for a new cache or selection.
  void redrawn();

 private:
  void onCacheChanged();
  void redraw();

  Session* session_;
  QSpinBox* layer_;
  QComboBox* kind_;
  QSpinBox* head_;
  QLabel* summary_;
  PlotWidget* heatmap_;
  QCPColorMap* map_;
  QCPColorScale* scale_;
};

}  // namespace kvscope::gui
