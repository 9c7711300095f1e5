// SPDX-License-Identifier: GPL-3.0-or-later
#include "on_screen.h"

#include <QDockWidget>
#include <QEvent>
#include <QTimer>
#include <QWidget>

namespace kvscope::gui {

bool isOnScreen(const QWidget* widget) {
  return widget && widget->isVisible() && !widget->visibleRegion().isEmpty();
}

WhenShown::WhenShown(QWidget* view, std::function<void()> refresh)
    : QObject(view), view_(view), refresh_(std::move(refresh)) {
  view_->installEventFilter(this);
}

void WhenShown::request() {
  watchDock();
  if (isOnScreen(view_)) {
    pending_ = false;
    refresh_();
  } else {
    pending_ = true;
  }
}

void WhenShown::watchDock() {
  // The view is put in its dock after it is built: look the dock up on use.
  if (dock_) return;
  for (QWidget* w = view_->parentWidget(); w; w = w->parentWidget()) {
    if (auto* dock = qobject_cast<QDockWidget*>(w)) {
      dock_ = dock;
      // Emitted when the dock's tab is picked, before the view has its new
      // geometry: check once the layout has settled.
      connect(dock, &QDockWidget::visibilityChanged, this, [this](bool visible) {
        if (visible && pending_) QTimer::singleShot(0, this, &WhenShown::catchUp);
      });
      return;
    }
  }
}

void WhenShown::catchUp() {
  if (pending_ && isOnScreen(view_)) {
    pending_ = false;
    refresh_();
  }
}

bool WhenShown::eventFilter(QObject* watched, QEvent* event) {
  if (watched == view_ && (event->type() == QEvent::Show || event->type() == QEvent::Resize) && pending_)
    QTimer::singleShot(0, this, &WhenShown::catchUp);
  return QObject::eventFilter(watched, event);
}

}  // namespace kvscope::gui
