// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace kvscope::io {

/// Read-only bytes of a file (memory-mapped) or of a buffer (an owned copy),
/// for parsers of untrusted files. Move-only. The bytes keep their address
/// for the object's whole life, moves included, so views into them stay valid.
class FileBytes {
 public:
  FileBytes() = default;
  /// Maps `path` read-only. Error(Io) naming the file when it cannot be
  /// opened, is not a regular file, or cannot be mapped. An empty file gives
  /// zero bytes.
  static FileBytes map(const std::filesystem::path& path);
  /// Copies `bytes`.
  static FileBytes copy(std::span<const std::uint8_t> bytes);

  ~FileBytes();
  FileBytes(FileBytes&& other) noexcept;
  FileBytes& operator=(FileBytes&& other) noexcept;
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }

 private:
  void release() noexcept;

  void* mapping_ = nullptr;          // mmap base, when mapped
  std::vector<std::uint8_t> owned_;  // storage, when copied
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace kvscope::io
