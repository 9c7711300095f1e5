#include "kvscope/io/gguf.h"

#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"

namespace kvscope::io {
namespace {

constexpr std::uint32_t kMagic = 0x46554747u;  // "GGUF" little-endian
// Limits far above any real file, so a corrupt count fails fast instead of
// allocating or looping for ages.
constexpr std::uint64_t kMaxStringBytes = 64ull << 20;
constexpr std::uint64_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;

struct BlockInfo {
  std::uint64_t block = 0;  // values per block
  std::uint64_t bytes = 0;  // bytes per block
};

BlockInfo block_info(std::uint32_t type) {
  switch (type) {
    case 0:
      return {1, 4};  // F32
    case 1:
      return {1, 2};  // F16
    case 2:
      return {32, 18};  // Q4_0
    case 3:
      return {32, 20};  // Q4_1
    case 6:
      return {32, 22};  // Q5_0
    case 7:
      return {32, 24};  // Q5_1
    case 8:
      return {32, 34};  // Q8_0
    case 9:
      return {32, 36};  // Q8_1
    case 10:
      return {256, 84};  // Q2_K
    case 11:
      return {256, 110};  // Q3_K
    case 12:
      return {256, 144};  // Q4_K
    case 13:
      return {256, 176};  // Q5_K
    case 14:
      return {256, 210};  // Q6_K
    case 15:
      return {256, 292};  // Q8_K
    case 24:
      return {1, 1};  // I8
    case 25:
      return {1, 2};  // I16
    case 26:
      return {1, 4};  // I32
    case 27:
      return {1, 8};  // I64
    case 28:
      return {1, 8};  // F64
    case 30:
      return {1, 2};  // BF16
    default:
      return {};
  }
}

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
    v.numbers.reserve(n);
    v.ints.reserve(n);
    GgufValue elem;
    elem.type = v.array_type;
    for (std::size_t i = 0; i < n; ++i) {
      read_scalar(r, elem, label, key);
      v.numbers.push_back(elem.type == GgufType::Float32 || elem.type == GgufType::Float64
                              ? elem.float_value
                              : static_cast<double>(elem.int_value));
      v.ints.push_back(elem.int_value);
    }
  }
  return v;
}

inline float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

inline std::uint16_t load_u16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

}  // namespace

std::string ggml_type_name(std::uint32_t type) {
  switch (type) {
    case 0:
      return "F32";
    case 1:
      return "F16";
    case 2:
      return "Q4_0";
    case 3:
      return "Q4_1";
    case 6:
      return "Q5_0";
    case 7:
      return "Q5_1";
    case 8:
      return "Q8_0";
    case 9:
      return "Q8_1";
    case 10:
      return "Q2_K";
    case 11:
      return "Q3_K";
    case 12:
      return "Q4_K";
    case 13:
      return "Q5_K";
    case 14:
      return "Q6_K";
    case 15:
      return "Q8_K";
    case 24:
      return "I8";
    case 25:
      return "I16";
    case 26:
      return "I32";
    case 27:
      return "I64";
    case 28:
      return "F64";
    case 30:
      return "BF16";
    default:
      return "type " + std::to_string(type);
  }
}

bool ggml_type_supported(std::uint32_t type) {
  return type == 0 || type == 1 || type == 30 || type == 8 || type == 2 || type == 3;
}

std::uint64_t ggml_nbytes(std::uint32_t type, std::uint64_t count) {
  const BlockInfo b = block_info(type);
  if (b.block == 0 || count % b.block != 0) return 0;
  const std::uint64_t blocks = count / b.block;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / b.bytes) return 0;
  return blocks * b.bytes;
}

void ggml_dequantize(std::uint32_t type, std::span<const std::uint8_t> bytes, std::span<float> out) {
  if (!ggml_type_supported(type)) {
    throw Error(ErrorCode::Unsupported,
                "GGUF tensor type " + ggml_type_name(type) +
                    " is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  }
  const std::uint64_t need = ggml_nbytes(type, out.size());
  if (need == 0 && !out.empty()) {
    throw Error(ErrorCode::Format, "GGUF tensor of " + std::to_string(out.size()) +
                                       " values is not a whole number of " + ggml_type_name(type) +
                                       " blocks");
  }
  if (need != bytes.size()) {
    throw Error(ErrorCode::Format, "GGUF tensor data is " + std::to_string(bytes.size()) +
                                       " bytes, expected " + std::to_string(need));
  }
  const std::uint8_t* p = bytes.data();
  float* o = out.data();
  const std::size_t n = out.size();
  switch (type) {
    case 0:
      std::memcpy(o, p, n * 4);
      break;
    case 1:
      for (std::size_t i = 0; i < n; ++i) o[i] = half_to_float(load_u16(p + 2 * i));
      break;
    case 30:
      for (std::size_t i = 0; i < n; ++i) o[i] = bf16_to_float(load_u16(p + 2 * i));
      break;
    case 8:  // Q8_0: fp16 scale d, 32 int8: x = d * q
      for (std::size_t b = 0; b < n / 32; ++b, p += 34, o += 32) {
        const float d = half_to_float(load_u16(p));
        for (int j = 0; j < 32; ++j) o[j] = d * static_cast<float>(static_cast<std::int8_t>(p[2 + j]));
      }
      break;
    case 2:  // Q4_0: fp16 d, 16 bytes of nibbles; low nibbles are values 0..15, high 16..31; x = d * (q - 8)
      for (std::size_t b = 0; b < n / 32; ++b, p += 18, o += 32) {
        const float d = half_to_float(load_u16(p));
        for (int j = 0; j < 16; ++j) {
          o[j] = d * static_cast<float>((p[2 + j] & 0x0F) - 8);
          o[j + 16] = d * static_cast<float>((p[2 + j] >> 4) - 8);
        }
      }
      break;
    case 3:  // Q4_1: fp16 d, fp16 m, 16 bytes of nibbles; x = d * q + m
      for (std::size_t b = 0; b < n / 32; ++b, p += 20, o += 32) {
        const float d = half_to_float(load_u16(p));
        const float m = half_to_float(load_u16(p + 2));
        for (int j = 0; j < 16; ++j) {
          o[j] = d * static_cast<float>(p[4 + j] & 0x0F) + m;
          o[j + 16] = d * static_cast<float>(p[4 + j] >> 4) + m;
        }
      }
      break;
    default:
      break;
  }
}

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
    const BlockInfo b = block_info(t.type);
    if (b.block != 0) {
      if (t.dims[0] % b.block != 0) {
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
    t.bytes =
        std::span<const std::uint8_t>(base + data_start + t.offset, static_cast<std::size_t>(t.nbytes));
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

std::vector<float> GgufFile::dequantize(const GgufTensor& tensor) const {
  std::vector<float> out(static_cast<std::size_t>(tensor.elements));
  dequantize_into(tensor, out);
  return out;
}

void GgufFile::dequantize_into(const GgufTensor& tensor, std::span<float> out) const {
  if (out.size() != tensor.elements) {
    throw Error(ErrorCode::InvalidArgument, label_,
                "output size does not match tensor '" + tensor.name + "'");
  }
  if (!ggml_type_supported(tensor.type)) {
    throw Error(ErrorCode::Unsupported, label_,
                "tensor '" + tensor.name + "' has type " + ggml_type_name(tensor.type) +
                    ", which is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  }
  try {
    ggml_dequantize(tensor.type, tensor.bytes, out);
  } catch (const Error& e) {
    throw Error(e.code(), label_, "tensor '" + tensor.name + "': " + e.what());
  }
}

}  // namespace kvscope::io
