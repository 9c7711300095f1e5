// SPDX-License-Identifier: Apache-2.0
#include "kvscope/io/file_bytes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "kvscope/common/error.h"

namespace kvscope::io {

FileBytes FileBytes::map(const std::filesystem::path& path) {
  const std::string label = path.string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::Io, label, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::Io, label, "not a regular file");
  }
  FileBytes f;
  f.size_ = static_cast<std::size_t>(st.st_size);
  if (f.size_ > 0) {
    void* m = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      const int saved = errno;
      ::close(fd);
      throw Error(ErrorCode::Io, label, std::string("cannot map: ") + std::strerror(saved));
    }
    f.mapping_ = m;
    f.data_ = static_cast<const std::uint8_t*>(m);
  }
  ::close(fd);
  return f;
}

FileBytes FileBytes::copy(std::span<const std::uint8_t> bytes) {
  FileBytes f;
  f.owned_.assign(bytes.begin(), bytes.end());
  f.data_ = f.owned_.data();
  f.size_ = f.owned_.size();
  return f;
}

FileBytes::~FileBytes() { release(); }

FileBytes::FileBytes(FileBytes&& other) noexcept { *this = std::move(other); }

FileBytes& FileBytes::operator=(FileBytes&& other) noexcept {
  if (this == &other) return *this;
  release();
  mapping_ = std::exchange(other.mapping_, nullptr);
  owned_ = std::move(other.owned_);  // a moved vector keeps its buffer
  data_ = std::exchange(other.data_, nullptr);
  size_ = std::exchange(other.size_, 0);
  return *this;
}

void FileBytes::release() noexcept {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
  mapping_ = nullptr;
  owned_.clear();
  data_ = nullptr;
  size_ = 0;
}

}  // namespace kvscope::io
