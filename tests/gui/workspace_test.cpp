// SPDX-License-Identifier: GPL-3.0-or-later
// The workspace schema and its validation, without a window (issue 19: the
// schema lived in MainWindow and could only be tested through it).
#include "workspace.h"

#include <gtest/gtest.h>

#include <QDir>
#include <QTemporaryDir>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::gui {
namespace {

std::string formatError(const QByteArray& json) {
  try {
    parseWorkspace(json);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
    return e.what();
  }
  return {};
}

TEST(Workspace, RegressionSchemaCouldOnlyBeTestedThroughTheWindow) {
  Workspace w;
  w.model = QStringLiteral("/models/m.gguf");
  w.context_name = QStringLiteral("notes");
  w.context_text = QStringLiteral("some text, with \"quotes\" and ünïcode");
#if KVSCOPE_GUI_HAVE_CODECS
  w.codec = codec::CodecConfig{"int8", {}};
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  auto bp = stream::BandwidthProfile::piecewise({{0, 40}, {1.5, 7.5}});
  bp.set_name("edited");
  w.profile = bp;
  w.slo_s = 3.25;
  w.chunk_tokens = 96;
  w.ladder_file = QStringLiteral("quantization");
#endif
  const Workspace back = parseWorkspace(workspaceJson(w));
  EXPECT_EQ(back.model, w.model);
  EXPECT_EQ(back.context_name, w.context_name);
  EXPECT_EQ(back.context_text, w.context_text);
#if KVSCOPE_GUI_HAVE_CODECS
  ASSERT_TRUE(back.codec);
  EXPECT_EQ(back.codec->codec, "int8");
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  ASSERT_TRUE(back.profile);
  EXPECT_EQ(back.profile->points().size(), 2u);
  EXPECT_EQ(back.profile->name(), "edited");
  EXPECT_DOUBLE_EQ(*back.slo_s, 3.25);
  EXPECT_EQ(*back.chunk_tokens, 96);
  EXPECT_EQ(back.ladder_file, QStringLiteral("quantization"));
#endif
}

TEST(Workspace, EveryBadFieldIsNamed) {
  EXPECT_NE(formatError("not json").find("not a KVScope workspace"), std::string::npos);
  EXPECT_NE(formatError(R"({"format": "other"})").find("kvscope-workspace"), std::string::npos);
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "model": 3})").find("model"), std::string::npos);
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "context": {"text": 5}})").find("context.text"),
            std::string::npos);
#if KVSCOPE_GUI_HAVE_CODECS
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "codec": {"name": "nope"}})").find("codec"),
            std::string::npos);
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "codec": {"name": "int8", "params": {"x": 1}}})")
                .find("codec.params.x"),
            std::string::npos);
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "stream": {"slo_s": -1}})").find("stream.slo_s"),
            std::string::npos);
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "stream": {"chunk_tokens": 2.5}})")
                .find("stream.chunk_tokens"),
            std::string::npos);
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "stream": {"profile": {"kind": "x"}}})")
                .find("stream.profile.kind"),
            std::string::npos);
  EXPECT_NE(
      formatError(R"({"format": "kvscope-workspace", "stream": {"ladder": "../etc"}})").find("stream.ladder"),
      std::string::npos);
  EXPECT_NE(formatError(R"({"format": "kvscope-workspace", "stream": {"ladder": 7}})").find("stream.ladder"),
            std::string::npos);
#endif
}

TEST(Workspace, ReadingAMissingFileNamesIt) {
  QTemporaryDir dir;
  const QString missing = dir.filePath(QStringLiteral("nothing.kvscope"));
  try {
    readWorkspace(missing);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find(missing.toStdString()), std::string::npos);
  }
}

#if KVSCOPE_GUI_HAVE_STREAM
TEST(Workspace, ShippedScenariosAreValidWorkspaces) {
  const QDir dir(QString::fromStdString((resource_dir() / "scenarios").string()));
  const auto files = dir.entryList({QStringLiteral("*.kvscope")}, QDir::Files);
  ASSERT_FALSE(files.isEmpty()) << dir.path().toStdString();
  for (const QString& f : files) {
    const Workspace w = readWorkspace(dir.filePath(f));
    EXPECT_TRUE(w.profile) << f.toStdString();
    EXPECT_TRUE(w.slo_s) << f.toStdString();
  }
}
#endif

}  // namespace
}  // namespace kvscope::gui
