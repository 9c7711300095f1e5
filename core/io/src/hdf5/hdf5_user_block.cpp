// SPDX-License-Identifier: Apache-2.0
// The whole-file checksum in the HDF5 user block: checked before HDF5 parses
// a single byte, because HDF5 1.10 is not hardened against corrupt input.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "hdf5_schema.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/io/hdf5_container.h"

namespace kvscope::io::schema {
namespace {

constexpr std::size_t kBlock = kHdf5UserBlockBytes;

/// CRC32C of bytes [kBlock, end) of an open file; also returns the size.
std::uint32_t crc_after_block(int fd, const std::string& name, std::uint64_t& size) {
  std::vector<std::uint8_t> buffer(1 << 20);
  std::uint32_t crc = 0;
  size = kBlock;
  off_t offset = static_cast<off_t>(kBlock);
  for (;;) {
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::Io, name, std::string("read failed: ") + std::strerror(errno));
    }
    if (n == 0) break;
    crc = crc32c(std::span(buffer.data(), static_cast<std::size_t>(n)), crc);
    offset += n;
    size += static_cast<std::uint64_t>(n);
  }
  return crc;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

/// Value of "key=value\n" in the block, or nullopt.
bool find_value(std::string_view block, std::string_view key, std::string_view& value) {
  const std::string needle = "\n" + std::string(key) + "=";
  const auto pos = block.find(needle);
  if (pos == std::string_view::npos) return false;
  const auto start = pos + needle.size();
  const auto end = block.find('\n', start);
  if (end == std::string_view::npos) return false;
  value = block.substr(start, end - start);
  return true;
}

template <typename T>
bool parse_number(std::string_view text, T& out, int base = 10) {
  if (text.empty()) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

void stamp_user_block(const std::filesystem::path& file, const std::string& report_name, int format_version) {
  Fd fd(::open(file.c_str(), O_RDWR | O_CLOEXEC));
  if (fd.get() < 0)
    throw Error(ErrorCode::Io, report_name, std::string("cannot reopen: ") + std::strerror(errno));
  std::uint64_t size = 0;
  const std::uint32_t crc = crc_after_block(fd.get(), report_name, size);
  char block[kBlock] = {};
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", crc);
  const std::string text = std::string(kUserBlockMagic) + "format_version=" + std::to_string(format_version) +
                           "\nfile_bytes=" + std::to_string(size) + "\ncrc32c=" + hex +
                           "\nThis block is KVScope's whole-file checksum; HDF5 data follows at byte 512.\n";
  std::memcpy(block, text.data(), std::min(text.size(), sizeof block - 1));
  if (::pwrite(fd.get(), block, sizeof block, 0) != static_cast<ssize_t>(sizeof block) ||
      ::fsync(fd.get()) != 0) {
    throw Error(ErrorCode::Io, report_name, std::string("write failed: ") + std::strerror(errno));
  }
  if (::close(fd.release()) != 0) {
    throw Error(ErrorCode::Io, report_name, std::string("close failed: ") + std::strerror(errno));
  }
}

std::uint64_t verify_user_block(const std::filesystem::path& file, int max_version) {
  const std::string name = file.string();
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw Error(ErrorCode::Io, name, std::string("cannot open: ") + std::strerror(errno));
  char block[kBlock + 1] = {};
  ssize_t got = 0;
  while (got < static_cast<ssize_t>(kBlock)) {
    const ssize_t n = ::pread(fd.get(), block + got, kBlock - static_cast<std::size_t>(got), got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(ErrorCode::Io, name, std::string("read failed: ") + std::strerror(errno));
    if (n == 0) break;
    got += n;
  }
  const std::string_view view(block, static_cast<std::size_t>(got));
  if (!view.starts_with(kUserBlockMagic)) {
    if (got >= 8 && std::memcmp(block, "\x89HDF\r\n\x1a\n", 8) == 0) {
      throw Error(ErrorCode::Format, name,
                  "HDF5 file without KVScope's checksum block (not written by KVScope, or rewritten by "
                  "another tool such as h5repack)");
    }
    throw Error(ErrorCode::Format, name, "not a KVScope HDF5 file (no KVScope header)");
  }
  // Search from the magic's final newline so every key is preceded by '\n'.
  const std::string_view body = view.substr(std::strlen(kUserBlockMagic) - 1);
  std::string_view text;
  int version = 0;
  if (!find_value(body, "format_version", text) || !parse_number(text, version) || version < 1) {
    throw Error(ErrorCode::Format, name, "KVScope header is damaged (format_version)");
  }
  if (version > max_version) {
    throw Error(ErrorCode::Unsupported, name,
                "written in HDF5 format version " + std::to_string(version) +
                    " by a newer KVScope; this build reads up to version " + std::to_string(max_version));
  }
  std::uint64_t expected_size = 0;
  std::uint32_t expected_crc = 0;
  if (!find_value(body, "file_bytes", text) || !parse_number(text, expected_size) ||
      !find_value(body, "crc32c", text) || text.size() != 8 || !parse_number(text, expected_crc, 16)) {
    throw Error(ErrorCode::Format, name, "KVScope header is damaged (file_bytes/crc32c)");
  }
  std::uint64_t size = 0;
  const std::uint32_t crc = crc_after_block(fd.get(), name, size);
  if (got < static_cast<ssize_t>(kBlock)) size = static_cast<std::uint64_t>(got);  // ends inside the block
  if (size < expected_size) {
    throw Error(ErrorCode::Format, name,
                "truncated: " + std::to_string(size) + " bytes, expected " + std::to_string(expected_size));
  }
  if (size > expected_size) {
    throw Error(ErrorCode::Format, name,
                "has " + std::to_string(size - expected_size) + " unexpected bytes after its end (" +
                    std::to_string(size) + " bytes, expected " + std::to_string(expected_size) + ")");
  }
  if (crc != expected_crc) {
    throw Error(ErrorCode::Checksum, name, "whole-file CRC32C mismatch: the file was altered or damaged");
  }
  return size;
}

}  // namespace kvscope::io::schema
