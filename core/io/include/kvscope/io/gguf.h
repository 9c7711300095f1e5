// SPDX-License-Identifier: Apache-2.0
#pragma once

// A pure C++ reader for GGUF v2/v3 model files (llama.cpp's format): header,
// metadata key/values, tensor infos with validated offsets, and
// dequantization to float32. No torch, so it can be fuzzed on its own.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvscope/io/file_bytes.h"
#include "kvscope/io/ggml_types.h"

namespace kvscope::io {

/// Metadata value types as GGUF numbers them.
enum class GgufType : std::uint32_t {
  UInt8 = 0,
  Int8 = 1,
  UInt16 = 2,
  Int16 = 3,
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  UInt64 = 10,
  Int64 = 11,
  Float64 = 12,
};

/// One metadata value. Scalars fill the matching field (integers both
/// `int_value` and, when non-negative, `uint_value`; floats `float_value`);
/// arrays of strings fill `strings`. Arrays of numbers or bools are kept once,
/// as the file stores them (`array_data`, a view into the file's mapping, valid
/// while the GgufFile lives); numbers() and ints() convert on request.
struct GgufValue {
  GgufType type = GgufType::UInt8;
  GgufType array_type = GgufType::UInt8;  ///< element type when type == Array
  std::int64_t int_value = 0;
  std::uint64_t uint_value = 0;
  double float_value = 0.0;
  bool bool_value = false;
  std::string string_value;
  std::vector<std::string> strings;
  std::span<const std::uint8_t> array_data;  ///< numeric arrays: the elements' little-endian bytes
  std::uint64_t array_size = 0;              ///< element count (nested arrays are counted, not kept)

  /// Elements of a numeric array as double (exact for 32-bit ints and floats);
  /// empty for other values.
  std::vector<double> numbers() const;
  /// Elements of a numeric array as int64 (floats truncated toward zero,
  /// u64 above INT64_MAX clamped); empty for other values.
  std::vector<std::int64_t> ints() const;
};

/// One tensor's info. `dims` are GGUF's ne[] (dims[0] varies fastest), so the
/// row-major shape is dims reversed.
struct GgufTensor {
  std::string name;
  std::vector<std::uint64_t> dims;
  std::uint32_t type = 0;
  std::uint64_t offset = 0;  ///< relative to the data section, validated
  std::uint64_t elements = 0;
  std::uint64_t nbytes = 0;             ///< 0 for types this reader cannot size
  std::span<const std::uint8_t> bytes;  ///< view into the file (empty if unsized)
  /// Row-major shape (dims reversed) as int64.
  std::vector<std::int64_t> shape() const;
};

/// A GGUF file, memory-mapped read-only. The constructor validates the
/// magic, version (2 or 3), every length and count against the file size,
/// key uniqueness, tensor dims (no overflow, rows a whole number of blocks),
/// alignment and that each sized tensor's bytes lie inside the data section.
/// Any problem throws Error(Format) naming the file; v1 or other versions
/// throw Error(Unsupported).
class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);
  /// Parses an in-memory image (copied); `label` names it in errors.
  static GgufFile from_bytes(std::span<const std::uint8_t> bytes, const std::string& label);
  ~GgufFile();
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;

  const std::string& label() const { return label_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  /// The value of `key`, or nullptr.
  const GgufValue* find_value(const std::string& key) const;
  /// Typed accessors: nullopt when absent; Error(Format) naming the file and
  /// key when present with an incompatible type (ints convert among themselves,
  /// ints and floats convert to double).
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<std::int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;

  /// The tensor called `name`, or nullptr.
  const GgufTensor* find(const std::string& name) const;
  /// The tensor called `name`; Error(Format) naming the file if absent.
  const GgufTensor& get(const std::string& name) const;

  /// Dequantizes a tensor to float32 in row-major order (elements values).
  /// Error(Unsupported) naming the type, tensor and file for a type
  /// ggml_type_supported() rejects, raised before any memory is allocated.
  std::vector<float> dequantize(const GgufTensor& tensor) const;
  /// Same into caller memory; `out.size()` must equal tensor.elements
  /// (Error(InvalidArgument) otherwise).
  void dequantize_into(const GgufTensor& tensor, std::span<float> out) const;
  /// Rows [row0, row0 + out.size() / row_length) of a tensor viewed as a
  /// row-major matrix whose rows are dims[0] long; `out.size()` must be a
  /// whole number of rows inside the tensor (Error(InvalidArgument)).
  void dequantize_rows(const GgufTensor& tensor, std::uint64_t row0, std::span<float> out) const;

 private:
  GgufFile() = default;
  void parse();
  /// Error(Unsupported) naming the tensor, its type and the file unless supported.
  void check_supported(const GgufTensor& tensor) const;

  std::filesystem::path path_;
  std::string label_;
  FileBytes bytes_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace kvscope::io
