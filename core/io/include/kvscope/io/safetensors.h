// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvscope/io/file_bytes.h"

namespace kvscope::io {

/// One tensor's entry in a safetensors header.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;           ///< "F32", "F16", "BF16", "I32", ...
  std::vector<std::int64_t> shape;
  std::span<const std::uint8_t> bytes;  ///< view into the mapped file

  std::int64_t elements() const;
};

/// A safetensors file mapped read-only. Every offset, shape and dtype in the
/// header is validated against the file size before any tensor is exposed;
/// malformed files throw Error(Format) naming the file and the problem.
class SafetensorsFile {
 public:
  /// Opens and validates `path`. Throws Error(Io) if it cannot be read,
  /// Error(Format) if the header is malformed.
  explicit SafetensorsFile(const std::filesystem::path& path);
  /// Parses an in-memory image (copied). Same validation; `label` names it in errors.
  static SafetensorsFile from_bytes(std::span<const std::uint8_t> bytes, const std::string& label);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  /// The tensor called `name`, or nullptr.
  const SafetensorsTensor* find(const std::string& name) const;
  /// The tensor called `name`; Error(Format) naming the file if absent.
  const SafetensorsTensor& get(const std::string& name) const;
  /// The "__metadata__" string map (empty if none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// Converts a F32/F16/BF16 tensor to float32; Error(Unsupported) for other dtypes.
  std::vector<float> to_float(const SafetensorsTensor& tensor) const;

 private:
  SafetensorsFile() = default;
  void parse();

  std::filesystem::path path_;
  std::string label_;
  FileBytes bytes_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor to write: raw little-endian bytes of `dtype` in row-major order.
struct SafetensorsWriteTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

/// Serialises tensors and metadata into safetensors bytes (tensors sorted by
/// name, header padded to 8 bytes as the reference implementation does).
std::vector<std::uint8_t> build_safetensors(const std::vector<SafetensorsWriteTensor>& tensors,
                                            const std::map<std::string, std::string>& metadata);

/// Element size of a safetensors dtype, or 0 if unknown.
std::size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace kvscope::io
