// SPDX-License-Identifier: GPL-3.0-or-later
#include "plot_widget.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QFontMetricsF>
#include <QMenu>
#include <QMessageBox>
#include <QSvgGenerator>
#include <QTextStream>
#include <QToolTip>
#include <algorithm>
#include <cmath>
#include <limits>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::gui {

PlotWidget::PlotWidget(QWidget* parent) : QCustomPlot(parent) {
  setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  setContextMenuPolicy(Qt::CustomContextMenu);
  setMouseTracking(true);
  setMinimumSize(200, 150);
  connect(this, &QWidget::customContextMenuRequested, this, &PlotWidget::showContextMenu);
  applyPalette();
}

void PlotWidget::refresh(bool immediate) {
  if (!user_zoomed_) fitView();
  replot(immediate ? QCustomPlot::rpImmediateRefresh : QCustomPlot::rpQueuedReplot);
}

void PlotWidget::resetView() {
  user_zoomed_ = false;
  fitView();
  replot(QCustomPlot::rpQueuedReplot);
}

void PlotWidget::fitView() {
  rescaleAxes();
  if (home_view_) home_view_();
}

void PlotWidget::updateLayout() {
  QCustomPlot::updateLayout();
  // Tick labels depend on the axis length, which the layout just computed;
  // a changed tick count or rotation changes the margins: lay out again
  // (bounded: lengths settle after a pass or two).
  for (int pass = 0; pass < 3; ++pass) {
    bool changed = false;
    for (QCPAxisRect* rect : axisRects())
      for (QCPAxis* axis : rect->axes())
        if (axis->visible() && axis->tickLabels()) changed = fitTickLabels(axis) || changed;
    if (!changed) break;
    QCustomPlot::updateLayout();
  }
}

namespace {

// QCPAxisTicker's steps include 2.5 x 10^k; an axis of layers or tokens wants
// whole numbers.
class IntegerTicker : public QCPAxisTicker {
 protected:
  double getTickStep(const QCPRange& range) override {
    const double exact = range.size() / double(std::max(1, tickCount()));
    if (!(exact > 1)) return 1;
    const double magnitude = std::pow(10.0, std::floor(std::log10(exact)));
    const double mantissa = exact / magnitude;
    const double nice = mantissa < 1.5 ? 1 : mantissa < 3.5 ? 2 : mantissa < 7.5 ? 5 : 10;
    return nice * magnitude;
  }
};

}  // namespace

void PlotWidget::setIntegerTicks(QCPAxis* axis) {
  auto ticker = QSharedPointer<IntegerTicker>::create();
  ticker->setTickCount(axis->ticker() ? axis->ticker()->tickCount() : 5);
  axis->setTicker(ticker);
}

bool PlotWidget::fitTickLabels(QCPAxis* axis) {
  const bool horizontal = axis->orientation() == Qt::Horizontal;
  const double length = horizontal ? axis->axisRect()->width() : axis->axisRect()->height();
  const QSharedPointer<QCPAxisTicker> ticker = axis->ticker();
  if (length <= 1 || !ticker) return false;
  const QFontMetricsF fm(axis->tickLabelFont());
  const double gap = fm.averageCharWidth() * 1.5;
  const QCPRange range = axis->range();
  const QString format = axis->numberFormat();
  const QChar format_char = format.isEmpty() ? QLatin1Char('g') : format.at(0);
  // Ticks and their labels inside the range, as the axis will draw them.
  auto visible = [&](QVector<double>& ticks, QVector<QString>& labels) {
    ticks.clear();
    labels.clear();
    ticker->generate(range, locale(), format_char, axis->numberPrecision(), ticks, nullptr, &labels);
    QVector<double> t;
    QVector<QString> l;
    for (int i = 0; i < ticks.size(); ++i)
      if (range.contains(ticks[i]) && i < labels.size()) t << axis->coordToPixel(ticks[i]), l << labels[i];
    ticks = t;
    labels = l;
  };
  // Smallest pixel distance between neighbours minus what their labels need.
  auto fits = [&](const QVector<double>& px, const QVector<QString>& labels, double angle) {
    const double rad = std::abs(angle) * M_PI / 180.0;
    for (int i = 1; i < px.size(); ++i) {
      const double d = std::abs(px[i] - px[i - 1]);
      double need = fm.height() + gap / 2;  // stacked text lines, or labels turned 90 degrees
      if (horizontal && angle == 0)
        need = (fm.horizontalAdvance(labels[i]) + fm.horizontalAdvance(labels[i - 1])) / 2 + gap;
      else if (horizontal)
        need = (fm.height() + gap / 2) / std::sin(rad);  // parallel turned labels: perpendicular distance
      if (d < need) return false;
    }
    return true;
  };
  QVector<double> px;
  QVector<QString> labels;
  if (ticker.dynamicCast<QCPAxisTickerText>()) {
    if (!horizontal) return false;  // one line per label stacked vertically: the count is the owner's
    visible(px, labels);
    double angle = -90;
    for (double a : {0.0, -45.0})
      if (fits(px, labels, a)) {
        angle = a;
        break;
      }
    if (axis->tickLabelRotation() == angle) return false;
    axis->setTickLabelRotation(angle);
    return true;
  }
  // Numeric: the most ticks (up to about one per 50 px, or 30 px vertically)
  // whose labels keep a gap to their neighbours.
  const int before = ticker->tickCount();
  int count = std::clamp(static_cast<int>(length / (horizontal ? 50.0 : 30.0)), 2, 12);
  for (; count > 1; --count) {
    ticker->setTickCount(count);
    visible(px, labels);
    if (fits(px, labels, 0)) break;
  }
  ticker->setTickCount(count);
  return count != before;
}

void PlotWidget::mouseDoubleClickEvent(QMouseEvent* event) {
  QCustomPlot::mouseDoubleClickEvent(event);
  resetView();
}

void PlotWidget::wheelEvent(QWheelEvent* event) {
  user_zoomed_ = true;
  QCustomPlot::wheelEvent(event);
}

void PlotWidget::mouseMoveEvent(QMouseEvent* event) {
  if (event->buttons() & Qt::LeftButton) user_zoomed_ = true;  // dragging pans
  QCustomPlot::mouseMoveEvent(event);
  if (event->buttons() != Qt::NoButton) return;
  const QPoint pos = event->position().toPoint();
  QString text;
  if (hover_text_at_) text = hover_text_at_(pos);
  if (text.isEmpty() && hover_text_)
    text = hover_text_(xAxis->pixelToCoord(pos.x()), yAxis->pixelToCoord(pos.y()));
  if (text.isEmpty()) text = defaultHoverText(pos);
  if (text.isEmpty()) {
    QToolTip::hideText();
  } else {
    QToolTip::showText(event->globalPosition().toPoint(), text, this);
  }
}

QString PlotWidget::defaultHoverText(const QPoint& pos) {
  if (!axisRect()->rect().contains(pos)) return {};
  const double x = xAxis->pixelToCoord(pos.x());
  const double y = yAxis->pixelToCoord(pos.y());
  QStringList lines;
  for (int i = 0; i < plottableCount(); ++i) {
    QCPAbstractPlottable* p = plottable(i);
    if (!p->visible()) continue;
    const QString name = p->name().isEmpty() ? QStringLiteral("series %1").arg(i + 1) : p->name();
    if (auto* map = qobject_cast<QCPColorMap*>(p)) {
      int kx = 0, ky = 0;
      map->data()->coordToCell(x, y, &kx, &ky);
      if (kx >= 0 && ky >= 0 && kx < map->data()->keySize() && ky < map->data()->valueSize()) {
        lines << QStringLiteral("%1: x=%2 y=%3 value=%4")
                     .arg(name)
                     .arg(kx)
                     .arg(ky)
                     .arg(map->data()->cell(kx, ky), 0, 'g', 5);
      }
      continue;
    }
    const auto* iface = p->interface1D();
    if (!iface || iface->dataCount() == 0) continue;
    // Nearest point by key.
    int idx = iface->findBegin(x, true);
    double best = std::numeric_limits<double>::infinity();
    int best_idx = -1;
    for (int j = std::max(0, idx - 1); j < std::min(iface->dataCount(), idx + 2); ++j) {
      const double d = std::abs(iface->dataMainKey(j) - x);
      if (d < best) best = d, best_idx = j;
    }
    if (best_idx < 0) continue;
    const double px = std::abs(xAxis->coordToPixel(iface->dataMainKey(best_idx)) - pos.x());
    if (px > 30) continue;
    lines << QStringLiteral("%1: %2 → %3")
                 .arg(name)
                 .arg(iface->dataMainKey(best_idx), 0, 'g', 5)
                 .arg(iface->dataMainValue(best_idx), 0, 'g', 5);
  }
  Q_UNUSED(y);
  return lines.join(QLatin1Char('\n'));
}

void PlotWidget::showContextMenu(const QPoint& pos) {
  QMenu menu(this);
  menu.addAction(tr("Reset zoom"), this, &PlotWidget::resetView);
  menu.addSeparator();
  menu.addAction(tr("Export image (PNG, SVG, PDF)..."), this, [this] {
    const QString path =
        QFileDialog::getSaveFileName(this, tr("Export plot"), QStringLiteral("plot.png"),
                                     tr("PNG image (*.png);;SVG image (*.svg);;PDF (*.pdf)"));
    if (path.isEmpty()) return;
    QString error;
    if (!exportImage(path, &error)) QMessageBox::warning(this, tr("Export failed"), error);
  });
  menu.addAction(tr("Export data (CSV)..."), this, [this] {
    const QString path =
        QFileDialog::getSaveFileName(this, tr("Export data"), QStringLiteral("plot.csv"), tr("CSV (*.csv)"));
    if (path.isEmpty()) return;
    QString error;
    if (!exportCsv(path, &error)) QMessageBox::warning(this, tr("Export failed"), error);
  });
  menu.exec(mapToGlobal(pos));
}

bool PlotWidget::exportImage(const QString& path, QString* error) {
  const QString suffix = QFileInfo(path).suffix().toLower();
  bool ok = false;
  if (suffix == QLatin1String("png")) {
    ok = savePng(path, width(), height(), 2.0);
  } else if (suffix == QLatin1String("pdf")) {
    ok = savePdf(path, width(), height());
  } else if (suffix == QLatin1String("svg")) {
    QSvgGenerator generator;
    generator.setFileName(path);
    generator.setSize(size());
    generator.setViewBox(rect());
    generator.setTitle(windowTitle());
    QCPPainter painter;
    ok = painter.begin(&generator);
    if (ok) {
      toPainter(&painter, width(), height());
      painter.end();
    }
    ok = ok && QFileInfo(path).size() > 0;
  } else {
    if (error) *error = tr("%1: unknown image format '%2' (use .png, .svg or .pdf)").arg(path, suffix);
    return false;
  }
  if (!ok && error) *error = tr("%1: could not write the image").arg(path);
  return ok;
}

QString PlotWidget::csvText() {
  QString out;
  QTextStream s(&out);
  for (int i = 0; i < plottableCount(); ++i) {
    QCPAbstractPlottable* p = plottable(i);
    const QString name = p->name().isEmpty() ? QStringLiteral("series %1").arg(i + 1) : p->name();
    s << "# " << name << '\n';
    if (auto* map = qobject_cast<QCPColorMap*>(p)) {
      s << "x,y,value\n";
      auto* d = map->data();
      for (int kx = 0; kx < d->keySize(); ++kx)
        for (int ky = 0; ky < d->valueSize(); ++ky) s << kx << ',' << ky << ',' << d->cell(kx, ky) << '\n';
      continue;
    }
    const auto* iface = p->interface1D();
    if (!iface) continue;
    s << xAxis->label().replace(QLatin1Char(','), QLatin1Char(' ')) << ','
      << yAxis->label().replace(QLatin1Char(','), QLatin1Char(' ')) << '\n';
    for (int j = 0; j < iface->dataCount(); ++j)
      s << iface->dataMainKey(j) << ',' << iface->dataMainValue(j) << '\n';
  }
  return out;
}

bool PlotWidget::exportCsv(const QString& path, QString* error) {
  const QByteArray bytes = csvText().toUtf8();
  try {
    write_file_atomically(path.toStdString(), bytes.constData(), static_cast<std::size_t>(bytes.size()));
  } catch (const Error& e) {
    if (error) *error = QString::fromUtf8(e.what());
    return false;
  }
  return true;
}

void PlotWidget::placeLegendOutside(int columns) {
  auto* row = new QCPLayoutGrid;
  plotLayout()->insertRow(0);
  plotLayout()->addElement(0, 0, row);
  row->setMargins(QMargins(6, 2, 6, 0));
  row->addElement(0, 0, legend);  // takes it out of the axis rect's inset layout
  legend->setFillOrder(QCPLegend::foColumnsFirst);
  legend->setWrap(columns);
  legend->setBorderPen(Qt::NoPen);
  legend->setMargins(QMargins(2, 1, 2, 1));
  plotLayout()->setRowStretchFactor(0, 0.001);
  if (plotLayout()->columnCount() > 1) plotLayout()->setColumnSpacing(0);
  legend_outside_ = true;
  applyPalette();
}

bool PlotWidget::darkBackground() const {
  return palette().color(QPalette::Base).lightness() < 128;
}

QColor PlotWidget::seriesColor(int index) const {
  // Okabe-Ito: distinguishable for colour-blind readers.
  static const QColor kBase[] = {QColor(0, 114, 178),   QColor(213, 94, 0),  QColor(0, 158, 115),
                                 QColor(204, 121, 167), QColor(230, 159, 0), QColor(86, 180, 233),
                                 QColor(240, 228, 66)};
  QColor c = kBase[static_cast<std::size_t>(index) % std::size(kBase)];
  return darkBackground() ? c.lighter(135) : c;
}

void PlotWidget::applyPalette() {
  if (applying_palette_) return;
  applying_palette_ = true;
  const QPalette pal = palette();
  const QColor base = pal.color(QPalette::Base);
  const QColor text = pal.color(QPalette::Text);
  QColor grid = text;
  grid.setAlpha(40);
  setBackground(base);
  for (QCPAxisRect* rect : axisRects()) {
    rect->setBackground(base);
    for (QCPAxis* axis : rect->axes()) {
      axis->setBasePen(QPen(text));
      axis->setTickPen(QPen(text));
      axis->setSubTickPen(QPen(text));
      axis->setTickLabelColor(text);
      axis->setLabelColor(text);
      axis->grid()->setPen(QPen(grid, 1, Qt::DotLine));
      axis->grid()->setZeroLinePen(QPen(grid));
    }
  }
  if (legend) {
    legend->setBrush(base);
    legend->setTextColor(text);
    legend->setBorderPen(legend_outside_ ? QPen(Qt::NoPen) : QPen(grid));
  }
  for (int i = 0; i < plotLayout()->elementCount(); ++i) {
    if (auto* title = qobject_cast<QCPTextElement*>(plotLayout()->elementAt(i))) title->setTextColor(text);
  }
  applying_palette_ = false;
  emit paletteApplied();
  replot(QCustomPlot::rpQueuedReplot);
}

void PlotWidget::changeEvent(QEvent* event) {
  QCustomPlot::changeEvent(event);
  if (event->type() == QEvent::PaletteChange) applyPalette();
}

}  // namespace kvscope::gui
