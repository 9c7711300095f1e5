#pragma once

#include <qcustomplot.h>

#include <QString>
#include <functional>

namespace kvscope::gui {

/// A QCustomPlot with the habits users expect from an explorer:
/// - drag to pan, wheel to zoom, double-click resets the view;
/// - the user's zoom is kept when the data changes (refresh()), until reset;
/// - hovering shows the value under the cursor;
/// - right-click exports the plot to PNG/SVG/PDF and its data to CSV;
/// - colours follow the application palette (light or dark) when it changes.
class PlotWidget : public QCustomPlot {
  Q_OBJECT

 public:
  explicit PlotWidget(QWidget* parent = nullptr);

  /// Call after replacing data: rescales only if the user has not zoomed, then
  /// redraws (at the next event-loop turn, or now when `immediate`).
  void refresh(bool immediate = false);
  /// Rescales all axes to the data and forgets the user's zoom.
  void resetView();
  bool userZoomed() const { return user_zoomed_; }

  /// Writes the plot as an image; the format follows the suffix (.png, .svg, .pdf).
  /// Returns false and sets `error` when the file cannot be written.
  bool exportImage(const QString& path, QString* error = nullptr);
  /// Writes every plottable's data as CSV (one block per series). Atomic.
  bool exportCsv(const QString& path, QString* error = nullptr);
  /// The CSV text exportCsv() writes.
  QString csvText();

  /// Optional custom hover text for a position in plot coordinates; return
  /// an empty string to fall back to the default (nearest series values).
  void setHoverText(std::function<QString(double x, double y)> fn) { hover_text_ = std::move(fn); }

  /// Series colour `index` of a qualitative palette, adjusted for light or dark backgrounds.
  QColor seriesColor(int index) const;
  bool darkBackground() const;
  /// Re-derives background, axis, grid and text colours from palette().
  void applyPalette();

 signals:
  /// Emitted after applyPalette() so owners can recolour their series.
  void paletteApplied();

 protected:
  void changeEvent(QEvent* event) override;
  void mouseDoubleClickEvent(QMouseEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;

 private:
  void showContextMenu(const QPoint& pos);
  QString defaultHoverText(const QPoint& pos);

  bool user_zoomed_ = false;
  bool applying_palette_ = false;
  std::function<QString(double, double)> hover_text_;
};

}  // namespace kvscope::gui
