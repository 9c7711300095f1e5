// SPDX-License-Identifier: Apache-2.0
#include "kvscope/io/gguf.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kvscope/common/error.h"

namespace kvscope::io {
namespace {

constexpr std::uint32_t kMagic = 0x46554747u;  // "GGUF" little-endian
// Limits far above any real file, so a corrupt count fails fast instead of
// allocating or looping for ages.
constexpr std::uint64_t kMaxStringBytes = 64ull << 20;
constexpr std::uint64_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;

// Bounds-checked little-endian cursor over the file image.
class Reader {
 public:
  Reader(const std::uint8_t* base, std::size_t size, const std::string& label)
      : base_(base), size_(size), label_(label) {}

  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return size_ - pos_; }

  void need(std::uint64_t n, const char* what) const {
    if (n > remaining()) {
      throw Error(
          ErrorCode::Format, label_,
          std::string("truncated GGUF header while reading ") + what + " at byte " + std::to_string(pos_));
    }
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // The next n bytes (already checked with need()) as a view; advances.
  std::span<const std::uint8_t> view(std::size_t n) {
    std::span<const std::uint8_t> s(base_ + pos_, n);
    pos_ += n;
    return s;
  }
  std::string string(const char* what) {
    const auto n = read<std::uint64_t>(what);
    if (n > kMaxStringBytes) {
      throw Error(ErrorCode::Format, label_,
                  std::string("implausible string length ") + std::to_string(n) + " in " + what);
    }
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }

 private:
  const std::uint8_t* base_;
  std::size_t size_;
  std::size_t pos_ = 0;
  const std::string& label_;
};

std::size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UInt8:
    case GgufType::Int8:
    case GgufType::Bool:
      return 1;
    case GgufType::UInt16:
    case GgufType::Int16:
      return 2;
    case GgufType::UInt32:
    case GgufType::Int32:
    case GgufType::Float32:
      return 4;
    case GgufType::UInt64:
    case GgufType::Int64:
    case GgufType::Float64:
      return 8;
    default:
      return 0;
  }
}

bool is_int(GgufType t) {
  switch (t) {
    case GgufType::UInt8:
    case GgufType::Int8:
    case GgufType::UInt16:
    case GgufType::Int16:
    case GgufType::UInt32:
    case GgufType::Int32:
    case GgufType::UInt64:
    case GgufType::Int64:
      return true;
    default:
      return false;
  }
}

// Reads one scalar into `v` (type already set).
void read_scalar(Reader& r, GgufValue& v, const std::string& label, const std::string& key) {
  switch (v.type) {
    case GgufType::UInt8:
      v.uint_value = r.read<std::uint8_t>("u8");
      v.int_value = static_cast<std::int64_t>(v.uint_value);
      break;
    case GgufType::Int8:
      v.int_value = r.read<std::int8_t>("i8");
      break;
    case GgufType::UInt16:
      v.uint_value = r.read<std::uint16_t>("u16");
      v.int_value = static_cast<std::int64_t>(v.uint_value);
      break;
    case GgufType::Int16:
      v.int_value = r.read<std::int16_t>("i16");
      break;
    case GgufType::UInt32:
      v.uint_value = r.read<std::uint32_t>("u32");
      v.int_value = static_cast<std::int64_t>(v.uint_value);
      break;
    case GgufType::Int32:
      v.int_value = r.read<std::int32_t>("i32");
      break;
    case GgufType::UInt64:
      v.uint_value = r.read<std::uint64_t>("u64");
      v.int_value = v.uint_value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                        ? std::numeric_limits<std::int64_t>::max()
                        : static_cast<std::int64_t>(v.uint_value);
      break;
    case GgufType::Int64:
      v.int_value = r.read<std::int64_t>("i64");
      break;
    case GgufType::Float32:
      v.float_value = r.read<float>("f32");
      break;
    case GgufType::Float64:
      v.float_value = r.read<double>("f64");
      break;
    case GgufType::Bool: {
      const auto b = r.read<std::uint8_t>("bool");
      if (b > 1)
        throw Error(ErrorCode::Format, label, "metadata '" + key + "': bool value " + std::to_string(b));
      v.bool_value = b != 0;
      v.int_value = b;
      break;
    }
    case GgufType::String:
      v.string_value = r.string("string value");
      break;
    default:
      throw Error(
          ErrorCode::Format, label,
          "metadata '" + key + "': unknown value type " + std::to_string(static_cast<std::uint32_t>(v.type)));
  }
  if (is_int(v.type)) {
    if (v.type == GgufType::Int8 || v.type == GgufType::Int16 || v.type == GgufType::Int32 ||
        v.type == GgufType::Int64) {
      v.uint_value = v.int_value < 0 ? 0 : static_cast<std::uint64_t>(v.int_value);
    }
    v.float_value = static_cast<double>(v.int_value);
  }
}

GgufValue read_value(Reader& r, GgufType type, const std::string& label, const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  if (type != GgufType::Array) {
    read_scalar(r, v, label, key);
    return v;
  }
  if (depth >= kMaxArrayDepth)
    throw Error(ErrorCode::Format, label, "metadata '" + key + "': arrays nested too deep");
  v.array_type = static_cast<GgufType>(r.read<std::uint32_t>("array type"));
  v.array_size = r.read<std::uint64_t>("array size");
  const std::uint32_t at = static_cast<std::uint32_t>(v.array_type);
  if (at > 12)
    throw Error(ErrorCode::Format, label,
                "metadata '" + key + "': unknown array element type " + std::to_string(at));
  // Every element takes at least one byte (strings eight), so a count beyond
  // the remaining bytes is corrupt: checked before reserving memory.
  const std::size_t min_elem =
      v.array_type == GgufType::String || v.array_type == GgufType::Array ? 8 : scalar_size(v.array_type);
  if (v.array_size > r.remaining() / min_elem) {
    throw Error(
        ErrorCode::Format, label,
        "metadata '" + key + "': array of " + std::to_string(v.array_size) + " elements exceeds the file");
  }
  const auto n = static_cast<std::size_t>(v.array_size);
  if (v.array_type == GgufType::String) {
    v.strings.reserve(n);
    for (std::size_t i = 0; i < n; ++i) v.strings.push_back(r.string("array string"));
  } else if (v.array_type == GgufType::Array) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto inner = static_cast<GgufType>(r.read<std::uint32_t>("nested array type"));
      if (inner != GgufType::Array) {
        // The element is itself typed; GGUF nests arrays as [type=ARRAY][elem type][count][...].
        throw Error(ErrorCode::Format, label, "metadata '" + key + "': malformed nested array");
      }
      (void)read_value(r, GgufType::Array, label, key, depth + 1);
    }
  } else {
    // Numeric arrays stay in the file: validate (bools must be 0/1) and keep a view.
    const std::size_t bytes = n * scalar_size(v.array_type);
    r.need(bytes, "array data");
    v.array_data = r.view(bytes);
    if (v.array_type == GgufType::Bool) {
      for (auto b : v.array_data) {
        if (b > 1)
          throw Error(ErrorCode::Format, label, "metadata '" + key + "': bool value " + std::to_string(b));
      }
    }
  }
  return v;
}

}  // namespace

std::vector<std::int64_t> GgufTensor::shape() const {
  std::vector<std::int64_t> s;
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) s.push_back(static_cast<std::int64_t>(*it));
  return s;
}

GgufFile::GgufFile(const std::filesystem::path& path)
    : path_(path), label_(path.string()), bytes_(FileBytes::map(path)) {
  parse();
}

GgufFile GgufFile::from_bytes(std::span<const std::uint8_t> bytes, const std::string& label) {
  GgufFile f;
  f.label_ = label;
  f.path_ = label;
  f.bytes_ = FileBytes::copy(bytes);
  f.parse();
  return f;
}

GgufFile::~GgufFile() = default;
// Tensor byte views point into bytes_, whose address survives moves.
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;

void GgufFile::parse() {
  const std::uint8_t* const base = bytes_.data();
  const std::size_t size = bytes_.size();
  Reader r(base, size, label_);
  if (size < 4) throw Error(ErrorCode::Format, label_, "not a GGUF file (too short for the magic)");
  const auto magic = r.read<std::uint32_t>("magic");
  if (magic != kMagic) throw Error(ErrorCode::Format, label_, "not a GGUF file (bad magic)");
  version_ = r.read<std::uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    throw Error(ErrorCode::Unsupported, label_,
                "GGUF version " + std::to_string(version_) + " is not supported (2 or 3)");
  }
  const auto tensor_count = r.read<std::uint64_t>("tensor count");
  const auto kv_count = r.read<std::uint64_t>("metadata count");
  // Each KV takes at least 8+4 bytes, each tensor info at least 8+4+4+8.
  if (kv_count > r.remaining() / 12)
    throw Error(ErrorCode::Format, label_, "metadata count exceeds the file");
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    std::string key = r.string("metadata key");
    const auto type = static_cast<GgufType>(r.read<std::uint32_t>("metadata type"));
    GgufValue v = read_value(r, type, label_, key, 0);
    if (!metadata_.emplace(key, std::move(v)).second) {
      throw Error(ErrorCode::Format, label_, "duplicate metadata key '" + key + "'");
    }
  }
  if (const auto* a = find_value("general.alignment")) {
    if (!is_int(a->type) || a->int_value <= 0 || a->int_value > (1 << 20) ||
        (a->int_value & (a->int_value - 1)) != 0) {
      throw Error(ErrorCode::Format, label_, "general.alignment must be a power of two");
    }
    alignment_ = static_cast<std::uint64_t>(a->int_value);
  }
  if (tensor_count > r.remaining() / 24)
    throw Error(ErrorCode::Format, label_, "tensor count exceeds the file");
  tensors_.reserve(static_cast<std::size_t>(tensor_count));
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor t;
    t.name = r.string("tensor name");
    const auto n_dims = r.read<std::uint32_t>("tensor dims");
    if (n_dims == 0 || n_dims > kMaxDims) {
      throw Error(ErrorCode::Format, label_,
                  "tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions");
    }
    t.elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = r.read<std::uint64_t>("tensor dim");
      if (dim == 0 || dim > (1ull << 40) || t.elements > (1ull << 42) / dim) {
        throw Error(ErrorCode::Format, label_, "tensor '" + t.name + "' has an implausible shape");
      }
      t.dims.push_back(dim);
      t.elements *= dim;
    }
    t.type = r.read<std::uint32_t>("tensor type");
    t.offset = r.read<std::uint64_t>("tensor offset");
    const GgmlBlock b = ggml_block(t.type);
    if (b.values != 0) {
      if (t.dims[0] % b.values != 0) {
        throw Error(ErrorCode::Format, label_,
                    "tensor '" + t.name + "': row of " + std::to_string(t.dims[0]) +
                        " values is not a whole number of " + ggml_type_name(t.type) + " blocks");
      }
      t.nbytes = ggml_nbytes(t.type, t.elements);
    }
    if (t.offset % alignment_ != 0) {
      throw Error(ErrorCode::Format, label_, "tensor '" + t.name + "': offset is not aligned");
    }
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) {
      throw Error(ErrorCode::Format, label_, "duplicate tensor '" + t.name + "'");
    }
    tensors_.push_back(std::move(t));
  }
  // Data section starts at the next multiple of the alignment.
  const std::uint64_t header_end = r.pos();
  const std::uint64_t data_start = (header_end + alignment_ - 1) / alignment_ * alignment_;
  const std::uint64_t data_size = data_start <= size ? size - data_start : 0;
  if (!tensors_.empty() && data_start > size) {
    throw Error(ErrorCode::Format, label_, "truncated: file ends before the tensor data");
  }
  for (auto& t : tensors_) {
    if (t.nbytes == 0) continue;  // unknown type: cannot size it; dequantize() refuses it
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      throw Error(ErrorCode::Format, label_,
                  "truncated: tensor '" + t.name + "' (" + std::to_string(t.nbytes) +
                      " bytes at data offset " + std::to_string(t.offset) +
                      ") extends past the end of the file");
    }
    t.bytes = std::span<const std::uint8_t>(base + data_start + t.offset, static_cast<std::size_t>(t.nbytes));
  }
}

const GgufValue* GgufFile::find_value(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const auto* v = find_value(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::String)
    throw Error(ErrorCode::Format, label_, "metadata '" + key + "' is not a string");
  return v->string_value;
}

std::optional<std::int64_t> GgufFile::get_int(const std::string& key) const {
  const auto* v = find_value(key);
  if (!v) return std::nullopt;
  if (!is_int(v->type)) throw Error(ErrorCode::Format, label_, "metadata '" + key + "' is not an integer");
  return v->int_value;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const auto* v = find_value(key);
  if (!v) return std::nullopt;
  if (!is_int(v->type) && v->type != GgufType::Float32 && v->type != GgufType::Float64) {
    throw Error(ErrorCode::Format, label_, "metadata '" + key + "' is not a number");
  }
  return v->float_value;
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const auto* v = find_value(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::Bool)
    throw Error(ErrorCode::Format, label_, "metadata '" + key + "' is not a bool");
  return v->bool_value;
}

const GgufTensor* GgufFile::find(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::get(const std::string& name) const {
  const auto* t = find(name);
  if (!t) throw Error(ErrorCode::Format, label_, "missing tensor '" + name + "'");
  return *t;
}

void GgufFile::check_supported(const GgufTensor& tensor) const {
  if (!ggml_type_supported(tensor.type)) {
    throw Error(ErrorCode::Unsupported, label_,
                "tensor '" + tensor.name + "' has type " + ggml_type_name(tensor.type) +
                    ", which is not supported (supported: " + ggml_supported_types_text() + ")");
  }
}

std::vector<float> GgufFile::dequantize(const GgufTensor& tensor) const {
  check_supported(tensor);  // before allocating: an unsupported type may be huge
  std::vector<float> out(static_cast<std::size_t>(tensor.elements));
  dequantize_into(tensor, out);
  return out;
}

void GgufFile::dequantize_into(const GgufTensor& tensor, std::span<float> out) const {
  if (out.size() != tensor.elements) {
    throw Error(ErrorCode::InvalidArgument, label_,
                "output size does not match tensor '" + tensor.name + "'");
  }
  dequantize_rows(tensor, 0, out);
}

void GgufFile::dequantize_rows(const GgufTensor& tensor, std::uint64_t row0, std::span<float> out) const {
  check_supported(tensor);
  const std::uint64_t row_len = tensor.dims.empty() ? 0 : tensor.dims[0];
  const std::uint64_t rows = row_len ? tensor.elements / row_len : 0;
  if (row_len == 0 || out.size() % row_len != 0 || row0 > rows || out.size() / row_len > rows - row0) {
    throw Error(ErrorCode::InvalidArgument, label_,
                "rows " + std::to_string(row0) + "+" + std::to_string(row_len ? out.size() / row_len : 0) +
                    " are not inside tensor '" + tensor.name + "'");
  }
  const std::uint64_t row_bytes = tensor.elements ? tensor.nbytes / rows : 0;
  try {
    ggml_dequantize(tensor.type,
                    tensor.bytes.subspan(static_cast<std::size_t>(row0 * row_bytes),
                                         static_cast<std::size_t>(out.size() / row_len * row_bytes)),
                    out);
  } catch (const Error& e) {
    throw Error(e.code(), label_, "tensor '" + tensor.name + "': " + e.what());
  }
}

namespace {

template <typename T>
T element(std::span<const std::uint8_t> data, std::size_t i) {
  T v;
  std::memcpy(&v, data.data() + i * sizeof(T), sizeof(T));
  return v;
}

// Element i of a numeric array, as F(double) or F(int64).
template <typename R>
R array_element(GgufType t, std::span<const std::uint8_t> d, std::size_t i) {
  switch (t) {
    case GgufType::UInt8:
    case GgufType::Bool:
      return static_cast<R>(element<std::uint8_t>(d, i));
    case GgufType::Int8:
      return static_cast<R>(element<std::int8_t>(d, i));
    case GgufType::UInt16:
      return static_cast<R>(element<std::uint16_t>(d, i));
    case GgufType::Int16:
      return static_cast<R>(element<std::int16_t>(d, i));
    case GgufType::UInt32:
      return static_cast<R>(element<std::uint32_t>(d, i));
    case GgufType::Int32:
      return static_cast<R>(element<std::int32_t>(d, i));
    case GgufType::UInt64: {
      const auto u = element<std::uint64_t>(d, i);
      if constexpr (std::is_same_v<R, std::int64_t>) {
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          return std::numeric_limits<std::int64_t>::max();
      }
      return static_cast<R>(u);
    }
    case GgufType::Int64:
      return static_cast<R>(element<std::int64_t>(d, i));
    case GgufType::Float32: {
      const float f = element<float>(d, i);
      if constexpr (std::is_same_v<R, std::int64_t>) {
        if (!(std::fabs(f) < 9.2e18f)) return 0;  // NaN or out of range: no UB
      }
      return static_cast<R>(f);
    }
    case GgufType::Float64: {
      const double f = element<double>(d, i);
      if constexpr (std::is_same_v<R, std::int64_t>) {
        if (!(std::fabs(f) < 9.2e18)) return 0;
      }
      return static_cast<R>(f);
    }
    default:
      return R{};
  }
}

template <typename R>
std::vector<R> array_values(const GgufValue& v) {
  std::vector<R> out;
  if (v.type != GgufType::Array || v.array_data.empty()) return out;
  const std::size_t size = scalar_size(v.array_type);
  if (size == 0) return out;
  const std::size_t n = v.array_data.size() / size;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.push_back(array_element<R>(v.array_type, v.array_data, i));
  return out;
}

}  // namespace

std::vector<double> GgufValue::numbers() const {
  return array_values<double>(*this);
}

std::vector<std::int64_t> GgufValue::ints() const {
  return array_values<std::int64_t>(*this);
}

}  // namespace kvscope::io
