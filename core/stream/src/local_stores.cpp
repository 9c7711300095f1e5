// SPDX-License-Identifier: Apache-2.0
// The stores on this machine: in memory and one file per key in a folder.
// Both pace their reads like the remote stores, so a receiver following a
// bandwidth trace sees the same byte timing whatever the medium.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/stream/chunk_store.h"

namespace kvscope::stream {
namespace {

namespace fs = std::filesystem;

class MemoryStore final : public ChunkStore {
 public:
  explicit MemoryStore(const StoreOptions& options) : options_(options) {}
  std::string describe() const override { return "memory: (in this process)"; }

  void put(const std::string& key, std::span<const std::uint8_t> value) override {
    check_key(key);
    auto copy = std::make_shared<const std::vector<std::uint8_t>>(value.begin(), value.end());
    std::lock_guard lock(mutex_);
    values_[key] = std::move(copy);
  }

  std::optional<std::vector<std::uint8_t>> get(const std::string& key, const ReadPacer& pace,
                                               FetchStats* stats) override {
    check_key(key);
    std::shared_ptr<const std::vector<std::uint8_t>> v;
    {
      std::lock_guard lock(mutex_);
      auto it = values_.find(key);
      if (it == values_.end()) return std::nullopt;
      v = it->second;
    }
    std::vector<std::uint8_t> out;
    out.reserve(v->size());
    for (std::size_t pos = 0; pos < v->size();) {
      const std::size_t n = std::min(options_.read_bytes, v->size() - pos);
      out.insert(out.end(), v->begin() + pos, v->begin() + pos + n);
      pos += n;
      if (pace) pace(n);
    }
    if (stats) *stats = {v->size(), 1, ""};
    return out;
  }

  bool remove(const std::string& key) override {
    std::lock_guard lock(mutex_);
    return values_.erase(key) > 0;
  }

  std::vector<std::string> list(const std::string& prefix) override {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (auto it = values_.lower_bound(prefix); it != values_.end() && it->first.starts_with(prefix); ++it)
      out.push_back(it->first);
    return out;
  }

 private:
  StoreOptions options_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const std::vector<std::uint8_t>>> values_;
};

class FolderStore final : public ChunkStore {
 public:
  FolderStore(fs::path folder, const StoreOptions& options) : folder_(std::move(folder)), options_(options) {
    std::error_code ec;
    fs::create_directories(folder_, ec);
    if (ec || !fs::is_directory(folder_))
      throw Error(ErrorCode::Io, folder_.string(), "cannot create the store folder: " + ec.message());
  }
  std::string describe() const override { return "dir:" + folder_.string(); }

  void put(const std::string& key, std::span<const std::uint8_t> value) override {
    check_key(key);
    try {
      write_file_atomically(folder_ / key, value.data(), value.size());
    } catch (const Error& e) {
      throw Error(ErrorCode::Io, "store " + describe() + ": cannot put " + key + ": " + e.what());
    }
  }

  std::optional<std::vector<std::uint8_t>> get(const std::string& key, const ReadPacer& pace,
                                               FetchStats* stats) override {
    check_key(key);
    const fs::path path = folder_ / key;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
      if (errno == ENOENT) return std::nullopt;
      throw Error(ErrorCode::Io,
                  "store " + describe() + ": cannot read " + key + ": " + std::strerror(errno));
    }
    struct Closer {
      std::FILE* f;
      ~Closer() { std::fclose(f); }
    } closer{f};
    std::vector<std::uint8_t> out;
    std::vector<std::uint8_t> buf(options_.read_bytes);
    for (;;) {
      const std::size_t n = std::fread(buf.data(), 1, buf.size(), f);
      out.insert(out.end(), buf.begin(), buf.begin() + n);
      if (n > 0 && pace) pace(n);
      if (n < buf.size()) {
        if (std::ferror(f))
          throw Error(ErrorCode::Io, "store " + describe() + ": read of " + key + " failed");
        break;
      }
    }
    if (stats) *stats = {out.size(), 1, ""};
    return out;
  }

  bool remove(const std::string& key) override {
    check_key(key);
    std::error_code ec;
    const bool removed = fs::remove(folder_ / key, ec);
    if (ec)
      throw Error(ErrorCode::Io, "store " + describe() + ": cannot remove " + key + ": " + ec.message());
    return removed;
  }

  std::vector<std::string> list(const std::string& prefix) override {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(folder_, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      // Temporary files of a put in progress are not keys.
      if (name.starts_with(prefix) && name.find(".tmp-") == std::string::npos && it->is_regular_file())
        out.push_back(name);
    }
    if (ec) throw Error(ErrorCode::Io, "store " + describe() + ": cannot list: " + ec.message());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  fs::path folder_;
  StoreOptions options_;
};

}  // namespace

void check_key(const std::string& key) {
  bool ok = !key.empty() && key.size() <= 512;
  for (char c : key) ok = ok && c > ' ' && c < 127 && c != '/';
  // "." and ".." would name folders in a folder store.
  ok = ok && key != "." && key != "..";
  require(ok, ErrorCode::InvalidArgument,
          "invalid store key '" + key.substr(0, 80) + "' (1-512 printable characters, no spaces or '/')");
}

std::unique_ptr<ChunkStore> make_memory_store(const StoreOptions& options) {
  return std::make_unique<MemoryStore>(options);
}

std::unique_ptr<ChunkStore> make_folder_store(const std::string& folder, const StoreOptions& options) {
  require(!folder.empty(), ErrorCode::InvalidArgument, "dir: store needs a folder (dir:PATH)");
  return std::make_unique<FolderStore>(folder, options);
}

}  // namespace kvscope::stream
