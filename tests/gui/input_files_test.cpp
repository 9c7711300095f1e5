// SPDX-License-Identifier: GPL-3.0-or-later
// What the window opens, told apart by content, and the text checks, without
// a window.
#include "input_files.h"

#include <gtest/gtest.h>

#include <QFile>
#include <QTemporaryDir>

#include "kvscope/common/error.h"

namespace kvscope::gui {
namespace {

class InputFilesTest : public ::testing::Test {
 protected:
  std::filesystem::path write(const QString& name, const QByteArray& bytes) {
    QFile f(dir_.filePath(name));
    EXPECT_TRUE(f.open(QIODevice::WriteOnly));
    f.write(bytes);
    return dir_.filePath(name).toStdString();
  }
  QTemporaryDir dir_;
};

TEST_F(InputFilesTest, ContentDecidesOverTheSuffix) {
  EXPECT_EQ(classifyInput(write("model.txt", QByteArray("GGUF\x03\x00\x00\x00", 8))), InputKind::Model);
  EXPECT_EQ(classifyInput(write("stream.bin", QByteArray("KVSC\x02\x00", 6))), InputKind::Bitstream);
  // An HDF5 file after KVScope's 512-byte user block, renamed.
  // (Its user block starts with KVScope's own tag, which is not a bitstream.)
  QByteArray h5("KVSC");
  h5 += QByteArray(508, '\0');
  h5 += QByteArray("\x89HDF\r\n\x1a\n", 8);
  EXPECT_EQ(classifyInput(write("export.dat", h5)), InputKind::Hdf5);
  EXPECT_EQ(classifyInput(write("cache.safetensors", "{}")), InputKind::RawCache);
  EXPECT_EQ(classifyInput(write("w.kvscope", "{}")), InputKind::Workspace);
  EXPECT_EQ(classifyInput(write("notes.md", "hello")), InputKind::Text);
  EXPECT_EQ(classifyInput(dir_.path().toStdString()), InputKind::Model);  // a Hugging Face folder
}

// Regression (issue 21): a binary file renamed .txt was accepted as a context
// and prefilled for 73 s.
TEST_F(InputFilesTest, RegressionBinaryFileRenamedTxtWasAcceptedAsAContext) {
  const auto path = write("weights.txt", QByteArray("\x7f"
                                                    "ELF\x02\x01\x01\x00\x00\x00",
                                                    10) +
                                             QByteArray(100, 'a'));
  try {
    readContextText(path);
    FAIL() << "a binary file was read as text";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a text file"), std::string::npos) << e.what();
  }
}

TEST_F(InputFilesTest, NonUtf8TextIsAnErrorNamingTheOffset) {
  const auto path = write("latin1.txt", QByteArray("caf\xe9 au lait"));
  try {
    readContextText(path);
    FAIL() << "Latin-1 bytes were read as UTF-8";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not UTF-8"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("offset 3"), std::string::npos) << e.what();
  }
}

TEST_F(InputFilesTest, Utf8TextWithBomTabsAndNewlinesReads) {
  const auto path = write("ok.txt", QByteArray("\xEF\xBB\xBFLine one\tend\r\nZw\xC3\xB6lf\n"));
  EXPECT_EQ(readContextText(path), QStringLiteral("Line one\tend\r\nZwölf\n"));
}

TEST_F(InputFilesTest, CacheLoadErrorsNameTheFile) {
  const auto path = write("broken.kvc", QByteArray("KVSC garbage"));
  try {
    loadCache(path, InputKind::Bitstream);
    FAIL() << "a corrupt bitstream decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvscope::gui
