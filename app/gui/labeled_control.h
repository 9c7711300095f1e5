// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

// A view's row of controls: each control after its label, both with the
// same tooltip (hovering either explains it).
#include <QHBoxLayout>
#include <QLabel>
#include <QString>
#include <QWidget>

namespace kvscope::gui {

/// Appends `label` and `control` to `row`; both get `tip` as their tooltip.
inline void addLabeledControl(QHBoxLayout* row, const QString& label, QWidget* control, const QString& tip) {
  auto* l = new QLabel(label);
  l->setToolTip(tip);
  control->setToolTip(tip);
  row->addWidget(l);
  row->addWidget(control);
}

}  // namespace kvscope::gui
