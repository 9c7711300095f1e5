// SPDX-License-Identifier: GPL-3.0-or-later
// The real window with the default model (label `model`).
#include <gtest/gtest.h>

#include <QFile>
#include <QLabel>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>

#include "job_runner.h"
#include "main_window.h"
#include "session.h"
#include "test_model.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "codec_panel.h"
#include "kvscope/codec/bitstream.h"
#include "spectrum_panel.h"
#endif

namespace kvscope::gui {
namespace {

const QString kShortContext = QStringLiteral(
    "The quick brown fox jumps over the lazy dog. Token locality means nearby tokens have similar keys.");

#if KVSCOPE_GUI_HAVE_MODEL
TEST(ModelWindow, StartsWithDefaultModelAndPrefillsShortContext) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(model_path);
  MainWindow::Options options;
  options.use_settings = false;
  options.keep_prefills = false;
  options.load_default = true;  // what a user gets at launch
  MainWindow window(options);
  // Short context instead of the 2K-token default, so the test stays fast.
  window.setContextText(QStringLiteral("short"), kShortContext, false);
  QSignalSpy loaded(&window, &MainWindow::modelLoaded);
  QSignalSpy prefilled(&window, &MainWindow::prefilled);
  QSignalSpy errors(&window, &MainWindow::errorShown);
  window.show();
  ASSERT_TRUE(loaded.wait(120000)) << "model did not load";
  EXPECT_EQ(window.session()->modelPath().toStdString(), model_path.string());
  ASSERT_TRUE(prefilled.count() > 0 || prefilled.wait(120000)) << "context did not prefill";
  EXPECT_EQ(errors.count(), 0);
  const auto cache = window.session()->cache();
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->shape().layers, 30);
  EXPECT_EQ(cache->shape().kv_heads, 3);
  EXPECT_GT(cache->shape().tokens, 10);
  EXPECT_LT(cache->shape().tokens, 40);
  // The prefill measured the channel weights calibration needs, one per
  // layer and channel, with the cache.
  const auto weights = window.session()->channelWeights();
  ASSERT_NE(weights, nullptr);
  const auto n = std::size_t(cache->shape().layers) * std::size_t(cache->shape().channels());
  ASSERT_EQ(weights->key.size(), n);
  ASSERT_EQ(weights->value.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::isfinite(weights->key[i]) && weights->key[i] >= 0) << i;
    ASSERT_TRUE(std::isfinite(weights->value[i]) && weights->value[i] > 0) << i;
  }
#if KVSCOPE_GUI_HAVE_CODECS
  // "Calibrate from this context" writes them into the file as cachegen's
  // channel weighting, and the codec panel (cachegen) encodes weighted.
  QTemporaryDir calibration;
  qputenv("KVSCOPE_CALIBRATION_DIR", calibration.path().toUtf8());
  auto* spectrum = window.findChild<SpectrumPanel*>();
  ASSERT_NE(spectrum, nullptr);
  QSignalSpy calibrated(spectrum, &SpectrumPanel::calibrated);
  QSignalSpy codec_errors(window.codecPanel(), &CodecPanel::errorOccurred);
  spectrum->calibrateFromCache();
  ASSERT_TRUE(calibrated.wait(120000));
  EXPECT_TRUE(calibrated.at(0).at(1).toStringList().contains(QStringLiteral("cachegen.channel-weighting")))
      << calibrated.at(0).at(1).toStringList().join(QStringLiteral(", ")).toStdString();
  EXPECT_EQ(window.codecPanel()->config().params.at("profile"),
            calibrated.at(0).at(0).toString().toStdString());
  ASSERT_TRUE(QTest::qWaitFor(
      [&] {
        const auto r = window.codecPanel()->lastResult();
        return r && codec::inspect_stream(r->bytes).params.count("channel_weighting") == 1;
      },
      120000))
      << window.codecPanel()->sizeReadout().toStdString() << " / "
      << (codec_errors.isEmpty() ? std::string() : codec_errors.last().at(0).toString().toStdString());
  qunsetenv("KVSCOPE_CALIBRATION_DIR");
#endif
}
#endif

// Regression (issue 21): a context longer than the model's limit was cut
// silently; the cut is said in the token info and the status bar.
TEST(ModelWindow, RegressionTruncationToTheContextLimitWasSilent) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(model_path);
  MainWindow::Options options;
  options.use_settings = false;
  options.keep_prefills = false;
  options.load_default = false;
  options.context_limit = 8;  // stands in for the model's 8192, so the test stays fast
  MainWindow window(options);
  window.show();
  QSignalSpy loaded(&window, &MainWindow::modelLoaded);
  window.openModel(QString::fromStdString(model_path.string()));
  ASSERT_TRUE(loaded.wait(120000));
  QSignalSpy prefilled(&window, &MainWindow::prefilled);
  window.setContextText(QStringLiteral("long"), kShortContext, true);
  ASSERT_TRUE(prefilled.wait(120000));
  EXPECT_EQ(window.session()->cache()->shape().tokens, 8);
  auto* info = window.findChild<QLabel*>(QStringLiteral("tokenInfo"));
  ASSERT_NE(info, nullptr);
  EXPECT_TRUE(info->text().contains(QStringLiteral("truncated"))) << info->text().toStdString();
  EXPECT_TRUE(info->text().contains(QStringLiteral("limit of 8 tokens"))) << info->text().toStdString();
}

TEST(ModelWindow, BadModelFileGivesErrorDialog) {
#if !KVSCOPE_GUI_HAVE_MODEL
  GTEST_SKIP() << "this build has no model runtime";
#else
  MainWindow::Options options;
  options.use_settings = false;
  options.keep_prefills = false;
  options.load_default = false;
  MainWindow window(options);
  QTemporaryDir dir;
  const QString bad = dir.filePath(QStringLiteral("garbage.gguf"));
  QFile f(bad);
  ASSERT_TRUE(f.open(QIODevice::WriteOnly));
  f.write("GGUF\x03\x00\x00\x00 this is not a model", 28);
  f.close();
  QSignalSpy errors(&window, &MainWindow::errorShown);
  window.openPath(bad);
  ASSERT_TRUE(errors.wait(20000));
  EXPECT_TRUE(errors.at(0).at(1).toString().contains(QStringLiteral("garbage.gguf")))
      << errors.at(0).at(1).toString().toStdString();
  ASSERT_NE(window.lastErrorBox(), nullptr);
  EXPECT_FALSE(window.session()->hasModel());
#endif
}

}  // namespace
}  // namespace kvscope::gui
