// SPDX-License-Identifier: Apache-2.0
#include "kvscope/io/safetensors.h"


#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"

namespace kvscope::io {
namespace {

// Headers larger than this are refused: real files have a few KB to a few MB.
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;
// A parsed JSON value costs ~20x its text (a 99 MB header of numbers took
// 2.2 GB): the header may hold at most this many values and nest this deep
// (a real one: ~10 values per tensor, depth 3), checked while parsing.
constexpr std::size_t kMaxHeaderValues = std::size_t(1) << 20;
constexpr int kMaxHeaderDepth = 8;

}  // namespace

std::size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
      {"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::int64_t SafetensorsTensor::elements() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : path_(path), label_(path.string()), bytes_(FileBytes::map(path)) {
  parse();
}

SafetensorsFile SafetensorsFile::from_bytes(std::span<const std::uint8_t> bytes, const std::string& label) {
  SafetensorsFile f;
  f.label_ = label;
  f.path_ = label;
  f.bytes_ = FileBytes::copy(bytes);
  f.parse();
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

void SafetensorsFile::parse() {
  const std::uint8_t* const base = bytes_.data();
  const std::size_t size = bytes_.size();
  auto fail = [&](const std::string& what) { throw Error(ErrorCode::Format, label_, "not a valid safetensors file: " + what); };
  if (size < 8) fail("shorter than its 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len == 0 || header_len > kMaxHeaderBytes) fail("header length " + std::to_string(header_len) + " is implausible");
  if (header_len > size - 8) fail("header length " + std::to_string(header_len) + " runs past the end of the file");
  const std::size_t data_start = 8 + static_cast<std::size_t>(header_len);
  const std::size_t data_size = size - data_start;

  nlohmann::json header;
  try {
    std::size_t values = 0;
    const nlohmann::json::parser_callback_t bounded = [&](int depth, nlohmann::json::parse_event_t event,
                                                          nlohmann::json&) {
      if (depth > kMaxHeaderDepth) fail("header nests deeper than " + std::to_string(kMaxHeaderDepth) + " levels");
      if (event != nlohmann::json::parse_event_t::object_end && event != nlohmann::json::parse_event_t::array_end &&
          ++values > kMaxHeaderValues)
        fail("header holds more than " + std::to_string(kMaxHeaderValues) + " JSON values");
      return true;
    };
    header = nlohmann::json::parse(base + 8, base + data_start, bounded);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("header is not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) fail("header is not a JSON object");

  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail("__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& t = *it;
    const std::string& name = it.key();
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets"))
      fail("tensor '" + name + "' lacks dtype, shape or data_offsets");
    if (!t["dtype"].is_string() || !t["shape"].is_array() || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2)
      fail("tensor '" + name + "' has malformed fields");
    SafetensorsTensor tensor;
    tensor.name = name;
    tensor.dtype = t["dtype"].get<std::string>();
    const std::size_t elem = safetensors_dtype_size(tensor.dtype);
    if (elem == 0) fail("tensor '" + name + "' has unknown dtype " + tensor.dtype);
    // The product of the non-zero dimensions is range-checked too, so a zero
    // dimension cannot hide a dimension that overflows int64 or a product
    // that overflows the byte count (the shape is used as int64 later).
    std::uint64_t nonzero = 1;
    bool has_zero = false;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned()) fail("tensor '" + name + "' has a negative or non-integer dimension");
      const std::uint64_t dim = d.get<std::uint64_t>();
      if (dim == 0) {
        has_zero = true;
      } else {
        if (nonzero > std::numeric_limits<std::uint64_t>::max() / 8 / dim)
          fail("tensor '" + name + "' is impossibly large");
        nonzero *= dim;
      }
      tensor.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const std::uint64_t count = has_zero ? 0 : nonzero;
    const auto& off = t["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) fail("tensor '" + name + "' has bad data_offsets");
    const std::uint64_t begin = off[0].get<std::uint64_t>();
    const std::uint64_t end = off[1].get<std::uint64_t>();
    if (begin > end || end > data_size)
      fail("tensor '" + name + "' data [" + std::to_string(begin) + ", " + std::to_string(end) +
           ") lies outside the " + std::to_string(data_size) + "-byte data section (truncated file?)");
    if (end - begin != count * elem)
      fail("tensor '" + name + "' holds " + std::to_string(end - begin) + " bytes but its shape needs " +
           std::to_string(count * elem));
    tensor.bytes = std::span<const std::uint8_t>(base + data_start + begin, end - begin);
    ranges.emplace_back(begin, end);
    tensors_.push_back(std::move(tensor));
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail("tensor data ranges overlap");
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const SafetensorsTensor& SafetensorsFile::get(const std::string& name) const {
  const auto* t = find(name);
  if (t == nullptr) throw Error(ErrorCode::Format, label_, "missing tensor '" + name + "'");
  return *t;
}

std::vector<float> SafetensorsFile::to_float(const SafetensorsTensor& t) const {
  const std::size_t n = static_cast<std::size_t>(t.elements());
  std::vector<float> out(n);
  const std::uint8_t* p = t.bytes.data();
  if (t.dtype == "F32") {
    std::memcpy(out.data(), p, n * 4);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    const bool bf = t.dtype == "BF16";
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint16_t h = static_cast<std::uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
      out[i] = bf ? bf16_to_float(h) : half_to_float(h);
    }
  } else {
    throw Error(ErrorCode::Unsupported, label_, "tensor '" + t.name + "' has dtype " + t.dtype + ", expected F32, F16 or BF16");
  }
  return out;
}

std::vector<std::uint8_t> build_safetensors(const std::vector<SafetensorsWriteTensor>& tensors,
                                            const std::map<std::string, std::string>& metadata) {
  std::vector<const SafetensorsWriteTensor*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->name < b->name; });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto* t : sorted) {
    header[t->name] = {{"dtype", t->dtype}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  std::vector<std::uint8_t> out;
  out.reserve(8 + text.size() + offset);
  std::uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(len >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const auto* t : sorted) out.insert(out.end(), t->bytes.begin(), t->bytes.end());
  return out;
}

}  // namespace kvscope::io
