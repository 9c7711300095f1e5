// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QPointF>
#include <QWidget>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/eval/quality.h"

class QComboBox;
class QDoubleSpinBox;
class QTableWidget;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QCPGraph;
class QCPErrorBars;
class QCPItemStraightLine;
class QCPItemText;

namespace kvscope::gui {

class PlotWidget;
class QualityService;
class Session;

/// Rate-distortion view: bits per element against KL (log scale) on the
/// current context, built from the codec registry and ParamSpecs only, so a
/// codec or parameter added to core/codec appears here without changes:
/// - every registered codec at its defaults (one labelled point each);
/// - sweeps the user adds: a codec, one of its parameters and the values to
///   try (suggested from the ParamSpec's range), drawn as a labelled line;
/// - the codec panel's current settings highlighted, with its bootstrap
///   interval as an error bar;
/// - clicking a point loads its settings into the codec panel;
/// - right-click exports the plot (PNG/SVG/PDF, CSV); Export results writes
///   every point with its settings and intervals (CSV).
class RdPanel : public QWidget {
  Q_OBJECT

 public:
  RdPanel(Session* session, QualityService* quality, std::function<codec::CodecConfig()> current,
          QWidget* parent = nullptr);

  /// Measures every codec at its defaults (known points come back at once).
  void measureDefaults();
  /// Adds a sweep of `param` of `codec` over `values` (text forms).
  void addSweep(const QString& codec, const QString& param, const QStringList& values);
  /// Values suggested for a parameter's sweep from its ParamSpec (range, choices).
  static QStringList suggestValues(const codec::ParamSpec& spec);

  PlotWidget* plot() const { return plot_; }
  /// Every measured point so far (defaults and sweeps).
  const std::vector<eval::QualityResult>& points() const { return points_; }
  /// The settings of the point drawn nearest to a pixel position, within `radius` px.
  std::optional<codec::CodecConfig> configAt(const QPointF& pixel, double radius = 10) const;
  /// KL target (nats): a dashed line; the status names the cheapest point under it.
  void setKlTarget(double nats);
  double klTarget() const;
  /// The cheapest measured point (fewest bits per element) with KL under the target.
  std::optional<eval::QualityResult> cheapestUnderTarget() const;
  QTableWidget* table() const { return table_; }
  /// The point labels drawn (a label with no free place beside its point is
  /// hidden; its point keeps its tooltip and table row).
  std::vector<QCPItemText*> pointLabels() const { return labels_; }
  /// Writes every point as CSV (eval::results_csv plus series and intervals). Atomic.
  bool exportResults(const QString& path, QString* error = nullptr) const;

 public slots:
  /// Re-marks the current settings (call on every codec panel change).
  void markCurrent();

 signals:
  /// The user clicked a point: load these settings.
  void loadRequested(const codec::CodecConfig& config);
  /// A point (or the current settings' result) was added and drawn.
  void updated();

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  struct Series {
    QString label;  ///< "defaults" or "cachegen: key_bins"
    QString param;  ///< the swept parameter (empty for defaults)
    std::vector<codec::CodecConfig> configs;
    QCPGraph* graph = nullptr;
  };
  void onPoint(const eval::QualityResult& result);
  void rebuildParams();
  void redraw();
  void fillTable();
  void describeTarget();
  /// Puts each point label beside its point (right or left, above or below)
  /// where it overlaps no other label or point, after every layout.
  void placeLabels();
  Series* seriesFor(const codec::CodecConfig& config, QString* point_label);

  Session* session_;
  QualityService* quality_;
  std::function<codec::CodecConfig()> current_;
  QComboBox* codec_;
  QComboBox* param_;
  QLineEdit* values_;
  QPushButton* defaults_;
  QPushButton* add_;
  QPushButton* cancel_;
  QPushButton* clear_;
  QPushButton* export_;
  QProgressBar* progress_;
  QLabel* status_;
  PlotWidget* plot_;
  QCPGraph* current_graph_;
  QDoubleSpinBox* target_;
  QCPItemStraightLine* target_line_ = nullptr;
  std::vector<QCPItemText*> labels_;
  QTableWidget* table_;
  QCPErrorBars* current_error_;
  std::vector<Series> series_;
  std::vector<eval::QualityResult> points_;
  std::optional<eval::QualityResult> current_result_;
  QPointF press_;  ///< where the last press on the plot was (a click loads, a drag pans)
};

}  // namespace kvscope::gui
