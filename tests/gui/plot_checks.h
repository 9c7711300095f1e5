// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once
// Checks on what a plot last drew, shared by the plot and window tests.
#include <qcustomplot.h>

#include <QFontMetricsF>
#include <cmath>
#include <string>

namespace kvscope::gui {

// Where two neighbouring tick labels of `axis` (as last drawn) overlap, or
// empty: flat labels need half of each width, labels turned by a need their
// line height across, stacked labels (vertical axes) their line height.
inline std::string tickLabelOverlap(QCPAxis* axis) {
  const QFontMetricsF fm(axis->tickLabelFont());
  const QVector<double> ticks = axis->tickVector();
  const QVector<QString> labels = axis->tickVectorLabels();
  const bool horizontal = axis->orientation() == Qt::Horizontal;
  const double angle = std::abs(axis->tickLabelRotation()) * M_PI / 180.0;
  int prev = -1;
  for (int i = 0; i < ticks.size(); ++i) {
    if (!axis->range().contains(ticks[i])) continue;
    if (prev >= 0) {
      const double d = std::abs(axis->coordToPixel(ticks[i]) - axis->coordToPixel(ticks[prev]));
      double need = fm.height();
      if (horizontal && angle == 0)
        need = (fm.horizontalAdvance(labels[i]) + fm.horizontalAdvance(labels[prev])) / 2;
      else if (horizontal)
        need = fm.height() / std::sin(angle);
      if (d < need)
        return labels[prev].toStdString() + " and " + labels[i].toStdString() + ": " + std::to_string(d) +
               " px apart, need " + std::to_string(need);
    }
    prev = i;
  }
  return {};
}

inline int visibleTicks(QCPAxis* axis) {
  int n = 0;
  for (double t : axis->tickVector()) n += axis->range().contains(t) ? 1 : 0;
  return n;
}

}  // namespace kvscope::gui
