#include <QApplication>

#include "kvscope/common/version.h"
#include "main_window.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("KVScope"));
  QApplication::setOrganizationName(QStringLiteral("KVScope"));
  QApplication::setApplicationVersion(QString::fromLatin1(kvscope::kVersion));
  kvscope::gui::MainWindow window;
  window.show();
  return QApplication::exec();
}
