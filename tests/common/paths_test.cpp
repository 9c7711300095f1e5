// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/paths.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "kvscope/common/error.h"

namespace kvscope {
namespace {
namespace fs = std::filesystem;

fs::path fresh_dir(const char* name) {
  fs::path dir = fs::temp_directory_path() / (std::string("kvscope-") + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(Paths, ModelDirHonoursEnvironment) {
  ::setenv("KVSCOPE_MODEL_DIR", "/some/where", 1);
  ::unsetenv("KVSCOPE_MODEL");
  EXPECT_EQ(model_dir(), fs::path("/some/where"));
  EXPECT_EQ(default_model_path(), fs::path("/some/where") / kDefaultModelFile);
  ::setenv("KVSCOPE_MODEL", "/x/model.gguf", 1);
  EXPECT_EQ(default_model_path(), fs::path("/x/model.gguf"));
  ::unsetenv("KVSCOPE_MODEL");
  ::unsetenv("KVSCOPE_MODEL_DIR");
}

TEST(Paths, DataDirHasResources) { EXPECT_TRUE(fs::is_directory(resource_dir())) << resource_dir(); }

TEST(AtomicWrite, WritesAndReplaces) {
  const fs::path dir = fresh_dir("atomic");
  const fs::path file = dir / "out.bin";
  write_file_atomically(file, "abc", 3);
  EXPECT_EQ(read_file(file), "abc");
  write_file_atomically(file, "defg", 4);
  EXPECT_EQ(read_file(file), "defg");
  EXPECT_THROW(write_file_atomically(file, "x", 1, /*overwrite=*/false), Error);
  EXPECT_EQ(read_file(file), "defg");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}

TEST(AtomicWrite, FailureLeavesNothingAndNamesFile) {
  const fs::path file = fs::path("/nonexistent-dir-kvscope") / "out.bin";
  try {
    write_file_atomically(file, "abc", 3);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos);
  }
}

TEST(ReadFile, MissingFileNamesIt) {
  try {
    read_file("/nonexistent/kvscope.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/kvscope.txt"), std::string::npos);
  }
}

}  // namespace
}  // namespace kvscope
