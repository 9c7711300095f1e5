// SPDX-License-Identifier: GPL-3.0-or-later
#include <QApplication>
#include <QCommandLineParser>
#include <QDockWidget>
#include <QElapsedTimer>

#include "decode_limit_setting.h"
#include "kvscope/common/blas_environment.h"
#include "kvscope/common/version.h"
#include "main_window.h"
#include "timing_report.h"

int main(int argc, char** argv) {
  kvscope::select_blas_kernels(argv);  // may re-execute this program; before any thread
  QElapsedTimer launch;
  launch.start();
  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("KVScope"));
  QApplication::setOrganizationName(QStringLiteral("KVScope"));
  QApplication::setApplicationVersion(QString::fromLatin1(kvscope::kVersion));
  kvscope::gui::apply_saved_decode_limit();  // before anything decodes

  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("KVScope: explore KV-cache compression and streaming"));
  parser.addHelpOption();
  parser.addVersionOption();
  QCommandLineOption show({QStringLiteral("show")},
                          QStringLiteral("Raise a panel at startup (dock object name, e.g. "
                                         "codecDock, rdDock, streamDock, pipelineDock, helpDock)."),
                          QStringLiteral("panel"));
  QCommandLineOption only({QStringLiteral("only")},
                          QStringLiteral("Show only this panel (dock object name), filling the window."),
                          QStringLiteral("panel"));
  QCommandLineOption timing({QStringLiteral("timing")},
                            QStringLiteral("Measure launch to first plot, retunes (first redraw, exact size, "
                                           "quality) and, when asked, a streaming run; print them and a "
                                           "one-line summary to stdout (docs/performance.md)."));
  QCommandLineOption quit_after({QStringLiteral("quit-after-timing")},
                                QStringLiteral("With --timing: quit once everything is measured and the "
                                               "summary line is printed (scripts/bench-app.sh)."));
  QCommandLineOption fresh({QStringLiteral("default-layout")},
                           QStringLiteral("Ignore the saved window geometry and dock layout."));
  QCommandLineOption run_stream({QStringLiteral("run-stream")},
                                QStringLiteral("With --timing: a streaming run after the retunes."));
  QCommandLineOption measure_rd({QStringLiteral("measure-rd")},
                                QStringLiteral("With --timing: measure every codec at its defaults and a "
                                               "cachegen key_bins sweep in the rate-distortion view after "
                                               "the retunes (and the streaming run)."));
  parser.addOption(run_stream);
  parser.addOption(measure_rd);
  parser.addOption(show);
  parser.addOption(only);
  parser.addOption(timing);
  parser.addOption(quit_after);
  parser.addOption(fresh);
  parser.addPositionalArgument(
      QStringLiteral("file"),
      QStringLiteral("A model (.gguf), text, KV cache (.safetensors) or workspace (.kvscope)."));
  parser.process(app);

  kvscope::gui::MainWindow::Options options;
  options.use_settings = !parser.isSet(fresh);
  kvscope::gui::MainWindow window(options);
  window.show();
  if (parser.isSet(show)) {
    if (auto* dock = window.findChild<QDockWidget*>(parser.value(show))) {
      dock->show();
      dock->raise();
    }
  }
  if (parser.isSet(only)) {
    for (auto* dock : window.findChildren<QDockWidget*>())
      dock->setVisible(dock->objectName() == parser.value(only));
  }
  for (const QString& file : parser.positionalArguments()) window.openPath(file);

  if (parser.isSet(timing)) {
    kvscope::gui::TimingReport::Options o;
    o.run_stream = parser.isSet(run_stream);
    o.measure_rd = parser.isSet(measure_rd);
    o.quit_when_done = parser.isSet(quit_after);
    new kvscope::gui::TimingReport(&window, launch, o);  // owned by the window
  }
  return QApplication::exec();
}
