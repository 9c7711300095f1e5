// SPDX-License-Identifier: GPL-3.0-or-later
#include "quality_strip.h"

#include <QFontMetricsF>
#include <QPainter>
#include <algorithm>
#include <cmath>

namespace kvscope::gui {

namespace {
constexpr double kLow = 1e-6, kHigh = 1.0;  // nats
constexpr int kMargin = 8;
}  // namespace

QualityStrip::QualityStrip(QWidget* parent) : QWidget(parent) {
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  setToolTip(
      tr("KL to the fp16 cache on a log scale (1e-6 to 1 nats): the dot is the current settings, the "
         "bar its 95% interval; ticks are codecs measured at their defaults."));
}

QSize QualityStrip::sizeHint() const {
  return {300, fontMetrics().height() * 2 + 14};
}

QSize QualityStrip::minimumSizeHint() const {
  return {120, sizeHint().height()};
}

void QualityStrip::setCurrent(double kl, double lo, double hi, bool stale) {
  has_current_ = true;
  kl_ = kl, lo_ = lo, hi_ = hi, stale_ = stale;
  update();
}

void QualityStrip::clearCurrent() {
  has_current_ = false;
  update();
}

void QualityStrip::setStale(bool stale) {
  stale_ = stale;
  update();
}

void QualityStrip::setMarks(std::vector<Mark> marks) {
  marks_ = std::move(marks);
  update();
}

double QualityStrip::xOf(double kl) const {
  const double f =
      (std::log10(std::clamp(kl, kLow, kHigh)) - std::log10(kLow)) / (std::log10(kHigh) - std::log10(kLow));
  return kMargin + f * double(width() - 2 * kMargin);
}

void QualityStrip::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const QPalette pal = palette();
  const QColor text = pal.color(QPalette::WindowText);
  QColor faint = text;
  faint.setAlpha(110);
  const int line_h = fontMetrics().height();
  const double axis_y = line_h + 6;
  // Axis with decade ticks.
  p.setPen(QPen(faint, 1));
  p.drawLine(QPointF(kMargin, axis_y), QPointF(width() - kMargin, axis_y));
  QFont small = font();
  small.setPointSizeF(std::max(6.0, small.pointSizeF() * 0.8));
  p.setFont(small);
  for (int e = -6; e <= 0; ++e) {
    const double x = xOf(std::pow(10.0, e));
    p.drawLine(QPointF(x, axis_y - 3), QPointF(x, axis_y + 3));
    const QString label = e == 0 ? QStringLiteral("1") : QStringLiteral("1e%1").arg(e);
    const double w = QFontMetricsF(small).horizontalAdvance(label);
    p.drawText(QPointF(std::clamp(x - w / 2, 0.0, width() - w), axis_y + 4 + QFontMetricsF(small).ascent()),
               label);
  }
  // Reference marks above the axis, labels alternating so neighbours do not collide.
  for (std::size_t i = 0; i < marks_.size(); ++i) {
    const double x = xOf(marks_[i].kl);
    p.setPen(QPen(faint, 1.5));
    p.drawLine(QPointF(x, axis_y - 7), QPointF(x, axis_y));
    const double w = QFontMetricsF(small).horizontalAdvance(marks_[i].label);
    p.drawText(QPointF(std::clamp(x - w / 2, 0.0, width() - w), axis_y - 8), marks_[i].label);
  }
  if (!has_current_) return;
  const QColor accent = pal.color(QPalette::Highlight);
  p.setPen(QPen(accent, 3, Qt::SolidLine, Qt::RoundCap));
  p.drawLine(QPointF(xOf(lo_), axis_y), QPointF(xOf(hi_), axis_y));
  p.setPen(QPen(accent, 2));
  p.setBrush(stale_ ? QBrush(Qt::NoBrush) : QBrush(accent));
  p.drawEllipse(QPointF(xOf(kl_), axis_y), 4.5, 4.5);
}

}  // namespace kvscope::gui
