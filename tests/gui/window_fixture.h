// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once
// The shared setup of the MainWindow tests: a window without the default
// model or user settings, a temporary folder, a small synthetic cache, and
// waits for the asynchronous steps (cache load, encode, stream run).
#include <gtest/gtest.h>

#include <QFile>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>
#include <functional>
#include <memory>

#include "kvscope/io/raw_cache.h"
#include "main_window.h"
#include "session.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "codec_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_STREAM
#include <QCheckBox>

#include "stream_panel.h"
#endif

namespace kvscope::gui {

class WindowFixture : public ::testing::Test {
 protected:
  static MainWindow::Options testOptions() {
    MainWindow::Options o;
    o.load_default = false;
    o.use_settings = false;
    o.keep_prefills = false;
    return o;
  }

  /// The window under test, created and shown on first use.
  MainWindow& window() {
    if (!window_) {
      window_ = std::make_unique<MainWindow>(testOptions());
      window_->show();
    }
    return *window_;
  }
  /// Closes the window; the next window() is a fresh one (e.g. to restore a workspace).
  void newWindow() { window_.reset(); }

  QString path(const QString& name) const { return dir_.filePath(name); }
  QString writeFile(const QString& name, const QByteArray& bytes) {
    QFile f(path(name));
    EXPECT_TRUE(f.open(QIODevice::WriteOnly)) << name.toStdString();
    f.write(bytes);
    return path(name);
  }
  QByteArray readFile(const QString& file) {
    QFile f(file);
    EXPECT_TRUE(f.open(QIODevice::ReadOnly)) << file.toStdString();
    return f.readAll();
  }

  /// Writes a 4-layer, 64-token cache with token locality (slow sines) and one
  /// outlier channel (dim 3 of each head); returns its path.
  QString syntheticCache() {
    kv::KVCache cache(kv::CacheShape{4, 2, 64, 16});
    const auto& s = cache.shape();
    for (int l = 0; l < s.layers; ++l)
      for (kv::Kind k : kv::kKinds)
        for (int h = 0; h < s.kv_heads; ++h)
          for (int t = 0; t < s.tokens; ++t)
            for (int d = 0; d < s.head_dim; ++d)
              cache.at(l, k, h, t, d) = float(std::sin(0.1 * t + d + l) * (d == 3 ? 20.0 : 1.0));
    cache.info.model_name = "synthetic";
    const QString file = path(QStringLiteral("synthetic.safetensors"));
    io::save_cache(cache, file.toStdString());
    return file;
  }

  /// Opens the synthetic cache in window() and waits until the session has it.
  ::testing::AssertionResult loadSyntheticCache() {
    QSignalSpy loaded(&window(), &MainWindow::prefilled);
    window().openCacheFile(syntheticCache());
    if (!loaded.wait(10000)) return ::testing::AssertionFailure() << "the synthetic cache did not load";
    return ::testing::AssertionSuccess();
  }

#if KVSCOPE_GUI_HAVE_CODECS
  /// The size readout after the encode that follows `change` (empty on failure).
  QString encodeAfter(const std::function<void()>& change) {
    CodecPanel* panel = window().codecPanel();
    QSignalSpy encoded(panel, &CodecPanel::encoded);
    QSignalSpy failed(panel, &CodecPanel::errorOccurred);
    change();
    if (!QTest::qWaitFor([&] { return encoded.count() > 0 || failed.count() > 0; }, 20000)) return {};
    if (failed.count() > 0) {
      ADD_FAILURE() << "encode failed: " << failed.at(0).at(0).toString().toStdString();
      return {};
    }
    return panel->sizeReadout();
  }
#endif

#if KVSCOPE_GUI_HAVE_STREAM
  /// Runs the stream panel on the simulated clock (instant) and waits for it.
  ::testing::AssertionResult runStream() {
    StreamPanel* panel = window().streamPanel();
    QSignalSpy finished(panel, &StreamPanel::finished);
    QSignalSpy errors(&window(), &MainWindow::errorShown);
    panel->setSimulated(true);
    panel->run();
    if (!QTest::qWaitFor([&] { return finished.count() > 0 || errors.count() > 0; }, 60000))
      return ::testing::AssertionFailure() << "the stream run did not finish";
    if (errors.count() > 0)
      return ::testing::AssertionFailure() << errors.at(0).at(1).toString().toStdString();
    return ::testing::AssertionSuccess();
  }
#endif

  QTemporaryDir dir_;
  std::unique_ptr<MainWindow> window_;
};

}  // namespace kvscope::gui
