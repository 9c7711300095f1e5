// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <qcustomplot.h>

#include <QString>
#include <functional>

namespace kvscope::gui {

/// A QCustomPlot with the habits users expect from an explorer:
/// - drag to pan, wheel to zoom, double-click resets the view (to the data,
///   or to the owner's home view for plots drawn with items);
/// - the user's zoom is kept when the data changes (refresh()), until reset;
/// - hovering shows the value under the cursor;
/// - right-click exports the plot to PNG/SVG/PDF and its data to CSV;
/// - colours follow the application palette (light or dark) when it changes;
/// - tick labels never overlap: at every layout, numeric axes get as many
///   ticks as their labels' widths allow in the axis length, and text axes
///   (QCPAxisTickerText) along x turn their labels 45 or 90 degrees when
///   they do not fit flat.
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
  /// The view resetView() (double-click, Reset zoom) and refresh() return to,
  /// for plots whose content rescaleAxes() cannot see (items such as bars
  /// drawn as rectangles): called after rescaleAxes() to set the ranges.
  void setHomeView(std::function<void()> fn) { home_view_ = std::move(fn); }

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
  /// The same by widget pixel, for plots with several axis rects (asked first).
  void setHoverTextAt(std::function<QString(const QPoint& pixel)> fn) { hover_text_at_ = std::move(fn); }

  /// Gives `axis` ticks on whole numbers only (layers, tokens, channels), in
  /// steps of 1, 2 or 5 times a power of ten; the tick count still fits the
  /// labels to the axis length.
  static void setIntegerTicks(QCPAxis* axis);

  /// Moves the legend out of the plot area into a row above it (items side
  /// by side, wrapping after `columns`), so it never covers data.
  void placeLegendOutside(int columns = 6);

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
  /// Lays out, then fits tick counts and label rotation to the axis lengths
  /// just computed, and lays out again when that changed anything.
  void updateLayout() override;

 private:
  void showContextMenu(const QPoint& pos);
  void fitView();
  /// Adjusts one axis's tick count or label rotation; true if it changed.
  bool fitTickLabels(QCPAxis* axis);
  QString defaultHoverText(const QPoint& pos);

  bool user_zoomed_ = false;
  bool applying_palette_ = false;
  bool legend_outside_ = false;
  std::function<QString(double, double)> hover_text_;
  std::function<QString(const QPoint&)> hover_text_at_;
  std::function<void()> home_view_;
};

}  // namespace kvscope::gui
