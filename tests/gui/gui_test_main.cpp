// SPDX-License-Identifier: GPL-3.0-or-later
// GoogleTest main for GUI tests: a QApplication on the offscreen platform, a
// throwaway settings location, so tests never touch the user's configuration.
#include <gtest/gtest.h>

#include <QApplication>
#include <QStandardPaths>

#include "kvscope/common/blas_environment.h"

int main(int argc, char** argv) {
  kvscope::select_blas_kernels(argv);  // may re-execute; see blas_environment.h
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QStandardPaths::setTestModeEnabled(true);
  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("KVScopeTest"));
  QApplication::setApplicationName(QStringLiteral("kvscope-gui-test"));
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
