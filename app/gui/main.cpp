// SPDX-License-Identifier: GPL-3.0-or-later
#include <QApplication>
#include <QCommandLineParser>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QTimer>
#include <cstdio>
#include <memory>

#include "decode_limit_setting.h"
#include "distributions_panel.h"
#include "kvscope/common/blas_environment.h"
#include "kvscope/common/version.h"
#include "main_window.h"
#include "session.h"
#if KVSCOPE_GUI_HAVE_STREAM
#include "stream_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_CODECS
#include "codec_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_EVAL
#include "quality_service.h"
#include "rd_panel.h"
#endif

#if KVSCOPE_GUI_HAVE_EVAL
// --measure-rd: every codec at defaults, then a key_bins sweep of cachegen.
struct RdPanelStarter {
  static void start(kvscope::gui::MainWindow& window) {
    auto* rd = window.rdPanel();
    auto* quality = window.qualityService();
    rd->measureDefaults();
    auto first = std::make_shared<QMetaObject::Connection>();
    *first =
        QObject::connect(quality, &kvscope::gui::QualityService::sweepFinished, rd, [rd, quality, first] {
          QObject::disconnect(*first);
          auto second = std::make_shared<QMetaObject::Connection>();
          *second = QObject::connect(quality, &kvscope::gui::QualityService::sweepFinished, rd, [second] {
            QObject::disconnect(*second);
            std::printf("rate-distortion sweep: done\n");
            std::fflush(stdout);
          });
          rd->addSweep(QStringLiteral("cachegen"), QStringLiteral("key_bins"),
                       {QStringLiteral("8,12,12"), QStringLiteral("12,16,16"), QStringLiteral("16,24,24"),
                        QStringLiteral("24,32,32"), QStringLiteral("32,48,48")});
        });
  }
};
#endif

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
                            QStringLiteral("Print launch-to-first-plot and re-encode times to stdout."));
  QCommandLineOption fresh({QStringLiteral("default-layout")},
                           QStringLiteral("Ignore the saved window geometry and dock layout."));
  QCommandLineOption run_stream({QStringLiteral("run-stream")},
                                QStringLiteral("Start a streaming run once the first cache is encoded."));
  QCommandLineOption measure_rd({QStringLiteral("measure-rd")},
                                QStringLiteral("Measure every codec at its defaults and a cachegen key_bins "
                                               "sweep in the rate-distortion view once the cache is ready."));
  parser.addOption(run_stream);
  parser.addOption(measure_rd);
  parser.addOption(show);
  parser.addOption(only);
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
  if (parser.isSet(only)) {
    for (auto* dock : window.findChildren<QDockWidget*>())
      dock->setVisible(dock->objectName() == parser.value(only));
  }
  for (const QString& file : parser.positionalArguments()) window.openPath(file);

  if (parser.isSet(timing)) {
    // "ready" once the first cache has its statistics drawn and its first encode shown.
    struct Timing {
      bool printed = false;
      bool encoded = !KVSCOPE_GUI_HAVE_CODECS;
    };
    auto t = std::make_shared<Timing>();
    const bool stream_after = parser.isSet(run_stream);
    const bool rd_after = parser.isSet(measure_rd);
    auto check = [&window, &launch, t, stream_after, rd_after] {
      if (t->printed || !t->encoded || !window.distributionsPanel()->stats()) return;
      t->printed = true;
      const auto cache = window.session()->cache();
      std::printf("ready: first plot %.2f s after launch (%d tokens, %s)\n", launch.nsecsElapsed() / 1e9,
                  cache ? cache->shape().tokens : 0,
                  window.session()->hasModel() ? "model loaded" : "kept prefill, model still loading");
      std::fflush(stdout);
#if KVSCOPE_GUI_HAVE_CODECS
      // Measure re-encode + redraw after parameter changes through the same
      // path a spin box takes: a few coarser/finer first-group key bins.
      // They end on the settings the app started with.
      if (window.codecPanel()->config().codec == "cachegen") {
        const QString start = QString::fromStdString(window.codecPanel()->config().params.at("key_bins"));
        for (int i = 0; i < 4; ++i) {
          QTimer::singleShot(1500 * (i + 1), &window, [&window, i, start] {
            QStringList bins = start.split(QLatin1Char(','));
            if (i % 2 == 0) bins[0] = QString::number(bins[0].toInt() * 2);
            window.codecPanel()->setParam(QStringLiteral("key_bins"), bins.join(QLatin1Char(',')));
          });
        }
      }
#endif
#if KVSCOPE_GUI_HAVE_STREAM
      if (stream_after) QTimer::singleShot(8000, &window, [&window] { window.streamPanel()->run(); });
#endif
#if KVSCOPE_GUI_HAVE_EVAL
      if (rd_after) QTimer::singleShot(8000, &window, [&window] { RdPanelStarter::start(window); });
#else
      (void)rd_after;
#endif
    };
    QObject::connect(window.distributionsPanel(), &kvscope::gui::DistributionsPanel::redrawn, &window, check);
#if KVSCOPE_GUI_HAVE_STREAM
    QObject::connect(window.streamPanel(), &kvscope::gui::StreamPanel::finished, &window, [&window] {
      for (const auto& r : window.streamPanel()->reports()) {
        std::string levels;
        for (const auto& c : r.chunks) levels += (levels.empty() ? "" : " ") + c.level_name;
        std::printf("stream %s: %.3f s to load (SLO %.2f s, %s), %.2f MB; %s\n", r.policy.c_str(), r.ttft_s,
                    r.slo_s, r.slo_met ? "met" : "missed", double(r.bytes_sent) / 1e6, levels.c_str());
      }
      std::printf("stream: done, %.2f s wall for %zu run(s)\n", window.streamPanel()->lastRunWallSeconds(),
                  window.streamPanel()->reports().size());
      std::fflush(stdout);
    });
#endif
#if KVSCOPE_GUI_HAVE_CODECS
    QObject::connect(window.codecPanel(), &kvscope::gui::CodecPanel::encoded, &window, [&window, t, check] {
      if (t->printed) {
        std::printf("re-encode + redraw: %.1f ms (%s; %s)\n", window.codecPanel()->lastUpdateMs(),
                    window.codecPanel()->config().codec.c_str(),
                    window.codecPanel()->timingBreakdown().toUtf8().constData());
        std::fflush(stdout);
      }
      t->encoded = true;
      check();
    });
#if KVSCOPE_GUI_HAVE_EVAL
    QObject::connect(window.qualityService(), &kvscope::gui::QualityService::liveResult, &window,
                     [](const kvscope::eval::QualityResult& r) {
                       std::printf("quality %s: KL %.3g [%.3g, %.3g], top-1 %.1f%%, dppl %+.2f%% (%.2f s)\n",
                                   r.config.codec.c_str(), r.kl, r.intervals.kl.lo, r.intervals.kl.hi,
                                   100 * r.top1_agreement, r.delta_ppl_pct, r.eval_seconds);
                       std::fflush(stdout);
                     });
    QObject::connect(window.qualityService(), &kvscope::gui::QualityService::sweepFinished, &window,
                     [&window] {
                       std::printf("rate-distortion: %zu point(s)\n", window.rdPanel()->points().size());
                       std::fflush(stdout);
                     });
#endif
#endif
  }
  return QApplication::exec();
}
