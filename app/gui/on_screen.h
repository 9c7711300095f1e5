// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QObject>
#include <QPointer>
#include <functional>

class QDockWidget;
class QWidget;

namespace kvscope::gui {

/// True when the user can see `widget`: it is shown and not behind another
/// tab of a tabbed dock area. Qt keeps the docks behind other tabs "visible"
/// (isVisible() is true) with an empty visible region, so isVisible() alone
/// would make a hidden view recompute on every retune.
bool isOnScreen(const QWidget* widget);

/// Runs a view's expensive refresh only while the view is on screen: request()
/// runs it now when the user can see the view, else marks it stale and runs
/// it once the view comes on screen (its dock tab is picked, or it is shown).
/// A retune then never waits for views nobody looks at (docs/performance.md,
/// "The app").
class WhenShown : public QObject {
  Q_OBJECT

 public:
  /// `view` owns this object; `refresh` runs on the GUI thread.
  WhenShown(QWidget* view, std::function<void()> refresh);

  void request();
  /// A request is waiting for the view to come on screen.
  bool pending() const { return pending_; }

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void watchDock();
  void catchUp();

  QWidget* view_;
  std::function<void()> refresh_;
  QPointer<QDockWidget> dock_;  ///< the dock holding the view, once found
  bool pending_ = false;
};

}  // namespace kvscope::gui
