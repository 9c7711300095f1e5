// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "kvscope/common/error.h"
#include "kvscope/model/model.h"
#include "sha256.h"

namespace kvscope::model {
namespace {

void hash_file(detail::Sha256& sha, const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::Io, path.string(), std::string("cannot open: ") + std::strerror(errno));
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw Error(ErrorCode::Io, path.string(), "read error");
}

}  // namespace

std::string model_file_sha256(const std::filesystem::path& path) {
  detail::Sha256 sha;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // A Hugging Face folder: its weight files in name order, so the hash
    // changes whenever a weight does.
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(path)) {
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw Error(ErrorCode::Io, path.string(), "no .safetensors files to hash");
    for (const auto& f : files) hash_file(sha, f);
  } else {
    hash_file(sha, path);
  }
  return sha.hex_digest();
}

}  // namespace kvscope::model
