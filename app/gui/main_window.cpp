#include "main_window.h"

#include <QApplication>
#include <QMenuBar>
#include <QMessageBox>
#include <QStatusBar>

#include "kvscope/common/version.h"

namespace kvscope::gui {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle(QStringLiteral("KVScope"));
  resize(1280, 800);
  auto* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Quit"), QKeySequence::Quit, qApp, &QApplication::quit);
  auto* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About KVScope"), this, [this] {
    QMessageBox::about(this, tr("About KVScope"),
                       tr("KVScope %1\nAn explorer for KV-cache compression and streaming.")
                           .arg(QString::fromLatin1(kvscope::kVersion)));
  });
  statusBar()->showMessage(tr("Ready"));
}

}  // namespace kvscope::gui
