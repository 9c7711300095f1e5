// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/paths.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "kvscope/common/error.h"

namespace kvscope {
namespace fs = std::filesystem;
namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

fs::path executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

}  // namespace

fs::path model_dir() {
  if (auto dir = env("KVSCOPE_MODEL_DIR")) return *dir;
  if (auto xdg = env("XDG_CACHE_HOME")) return fs::path(*xdg) / "kvscope" / "models";
  if (auto home = env("HOME")) return fs::path(*home) / ".cache" / "kvscope" / "models";
  return fs::path(".cache") / "kvscope" / "models";
}

fs::path default_model_path() {
  if (auto model = env("KVSCOPE_MODEL")) return *model;
  return model_dir() / kDefaultModelFile;
}

std::optional<fs::path> find_default_model() {
  fs::path path = default_model_path();
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return path;
  return std::nullopt;
}

std::string missing_model_help() {
  // Installed (the package puts kvscope-fetch-model next to the binaries) or
  // run from a build of the source tree (scripts/ of data_dir()).
  std::error_code ec;
  const fs::path exe_dir = executable_dir();
  std::string fetch;
  if (!exe_dir.empty() && fs::is_regular_file(exe_dir / "kvscope-fetch-model", ec)) {
    fetch = (exe_dir / "kvscope-fetch-model").string();
  } else {
    const fs::path scripts = data_dir() / "scripts";
    fetch = (scripts / "fetch-model.sh").string();
    if (fs::is_regular_file(scripts / "setup.sh", ec)) {
      fetch += " (or " + (scripts / "setup.sh").string() + ")";
    }
  }
  return "the default model was not found at " + default_model_path().string() + "; run " + fetch +
         " to download it, or set KVSCOPE_MODEL to a .gguf file or a Hugging Face model folder";
}

fs::path data_dir() {
  if (auto dir = env("KVSCOPE_DATA_DIR")) return *dir;
  std::error_code ec;
  const fs::path exe_dir = executable_dir();
  if (!exe_dir.empty()) {
    const fs::path installed = exe_dir.parent_path() / "share" / "kvscope";
    if (fs::is_directory(installed / "resources", ec)) return installed;
  }
  if (fs::is_directory(fs::path(KVSCOPE_SOURCE_DIR) / "resources", ec)) return KVSCOPE_SOURCE_DIR;
  return KVSCOPE_INSTALL_DATADIR;
}

fs::path resource_dir() { return data_dir() / "resources"; }
fs::path dataset_dir() { return data_dir() / "datasets"; }

void write_file_atomically(const fs::path& path, const void* bytes, std::size_t size,
                           bool overwrite) {
  std::error_code ec;
  if (!overwrite && fs::exists(path, ec)) {
    throw Error(ErrorCode::Io, path.string(), "file exists (pass the overwrite flag to replace it)");
  }
  std::random_device rd;
  const fs::path tmp = path.parent_path() /
                       (path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                        std::to_string(rd()));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    throw Error(ErrorCode::Io, path.string(), std::string("cannot create: ") + std::strerror(errno));
  }
  const bool ok = (size == 0 || std::fwrite(bytes, 1, size, f) == size) && std::fflush(f) == 0 &&
                  ::fsync(::fileno(f)) == 0;
  const int saved_errno = errno;
  std::fclose(f);
  if (!ok) {
    fs::remove(tmp, ec);
    throw Error(ErrorCode::Io, path.string(), std::string("write failed: ") + std::strerror(saved_errno));
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(ErrorCode::Io, path.string(), "cannot rename temporary file into place");
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::Io, path.string(), std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(ErrorCode::Io, path.string(), "read failed");
  return std::move(ss).str();
}

}  // namespace kvscope
