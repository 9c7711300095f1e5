#include "plot_widget.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QSvgGenerator>
#include <QTextStream>
#include <QToolTip>
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
  if (!user_zoomed_) rescaleAxes();
  replot(immediate ? QCustomPlot::rpImmediateRefresh : QCustomPlot::rpQueuedReplot);
}

void PlotWidget::resetView() {
  user_zoomed_ = false;
  rescaleAxes();
  replot(QCustomPlot::rpQueuedReplot);
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
  if (hover_text_) text = hover_text_(xAxis->pixelToCoord(pos.x()), yAxis->pixelToCoord(pos.y()));
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
    legend->setBorderPen(QPen(grid));
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
