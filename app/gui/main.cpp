#include <QApplication>
#include <QCommandLineParser>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QTimer>
#include <cstdio>
#include <memory>

#include "distributions_panel.h"
#include "kvscope/common/version.h"
#include "main_window.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "codec_panel.h"
#endif

int main(int argc, char** argv) {
  QElapsedTimer launch;
  launch.start();
  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("KVScope"));
  QApplication::setOrganizationName(QStringLiteral("KVScope"));
  QApplication::setApplicationVersion(QString::fromLatin1(kvscope::kVersion));

  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("KVScope: explore KV-cache compression and streaming"));
  parser.addHelpOption();
  parser.addVersionOption();
  QCommandLineOption show({QStringLiteral("show")},
                          QStringLiteral("Raise a panel at startup (dock object name, "
                                         "e.g. codecDock, qualityDock)."),
                          QStringLiteral("panel"));
  QCommandLineOption timing({QStringLiteral("timing")},
                            QStringLiteral("Print launch-to-first-plot and re-encode times to stdout."));
  QCommandLineOption fresh({QStringLiteral("default-layout")},
                           QStringLiteral("Ignore the saved window geometry and dock layout."));
  parser.addOption(show);
  parser.addOption(timing);
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
  for (const QString& file : parser.positionalArguments()) window.openPath(file);

  if (parser.isSet(timing)) {
    // "ready" once the first cache has its statistics drawn and its first encode shown.
    struct Timing {
      bool printed = false;
      bool encoded = !KVSCOPE_GUI_HAVE_CODECS;
    };
    auto t = std::make_shared<Timing>();
    auto check = [&window, &launch, t] {
      if (t->printed || !t->encoded || !window.distributionsPanel()->stats()) return;
      t->printed = true;
      std::printf("ready: first plot %.2f s after launch\n", launch.nsecsElapsed() / 1e9);
      std::fflush(stdout);
    };
    QObject::connect(window.distributionsPanel(), &kvscope::gui::DistributionsPanel::redrawn, &window, check);
#if KVSCOPE_GUI_HAVE_CODECS
    QObject::connect(window.codecPanel(), &kvscope::gui::CodecPanel::encoded, &window, [&window, t, check] {
      if (t->printed) {
        std::printf("re-encode + redraw: %.1f ms (%s)\n", window.codecPanel()->lastUpdateMs(),
                    window.codecPanel()->config().codec.c_str());
        std::fflush(stdout);
      }
      t->encoded = true;
      check();
    });
#endif
  }
  return QApplication::exec();
}
