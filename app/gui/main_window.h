#pragma once

#include <QMainWindow>

namespace kvscope::gui {

/// The KVScope main window: dockable panels over one shared session.
class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(QWidget* parent = nullptr);
};

}  // namespace kvscope::gui
