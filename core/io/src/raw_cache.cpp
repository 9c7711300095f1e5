#include "kvscope/io/raw_cache.h"

#include <cmath>
#include <cstring>

#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/safetensors.h"

namespace kvscope::io {
namespace {

std::string tensor_name(int layer, kv::Kind kind) {
  return "layers." + std::to_string(layer) + "." + kv::to_string(kind);
}

std::vector<std::uint8_t> int32_bytes(const std::vector<std::int32_t>& v) {
  std::vector<std::uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace

void save_cache(const kv::KVCache& cache, const std::filesystem::path& path, RawDtype dtype) {
  const auto& s = cache.shape();
  std::vector<SafetensorsWriteTensor> tensors;
  for (int l = 0; l < s.layers; ++l) {
    for (kv::Kind k : kv::kKinds) {
      SafetensorsWriteTensor t;
      t.name = tensor_name(l, k);
      t.shape = {s.kv_heads, s.tokens, s.head_dim};
      const auto values = cache.tensor(l, k);
      if (dtype == RawDtype::F16) {
        t.dtype = "F16";
        t.bytes.resize(values.size() * 2);
        for (std::size_t i = 0; i < values.size(); ++i) {
          const std::uint16_t h = float_to_half(values[i]);
          t.bytes[2 * i] = static_cast<std::uint8_t>(h);
          t.bytes[2 * i + 1] = static_cast<std::uint8_t>(h >> 8);
        }
      } else {
        t.dtype = "F32";
        t.bytes.resize(values.size() * 4);
        std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
      }
      tensors.push_back(std::move(t));
    }
  }
  if (cache.info.token_ids.size() == std::size_t(s.tokens))
    tensors.push_back({"token_ids", "I32", {s.tokens}, int32_bytes(cache.info.token_ids)});
  if (cache.info.positions.size() == std::size_t(s.tokens))
    tensors.push_back({"positions", "I32", {s.tokens}, int32_bytes(cache.info.positions)});
  if (!cache.info.rope_inv_freq.empty()) {
    // [layers, head_dim/2] f64: the frequencies a codec needs to remove RoPE exactly.
    std::vector<std::uint8_t> f;
    for (const auto& table : cache.info.rope_inv_freq) {
      require(table.size() == std::size_t(s.head_dim / 2) && cache.info.rope_inv_freq.size() == std::size_t(s.layers),
              ErrorCode::InvalidArgument, "cache info: RoPE frequency tables do not match the cache shape");
      const auto* p = reinterpret_cast<const std::uint8_t*>(table.data());
      f.insert(f.end(), p, p + table.size() * 8);
    }
    tensors.push_back({"rope_inv_freq", "F64", {s.layers, s.head_dim / 2}, std::move(f)});
  }
  if (cache.info.layer_window.size() == std::size_t(s.layers))
    tensors.push_back({"layer_window", "I32", {s.layers}, int32_bytes(cache.info.layer_window)});
  std::map<std::string, std::string> meta = {
      {"format", "kvscope.kv_cache"},
      {"format_version", "1"},
      {"model", cache.info.model_name},
      {"architecture", cache.info.architecture},
      {"model_sha256", cache.info.model_sha256},
      {"tokens", std::to_string(s.tokens)},
      {"layers", std::to_string(s.layers)},
      {"kv_heads", std::to_string(s.kv_heads)},
      {"head_dim", std::to_string(s.head_dim)},
      {"rope_applied", cache.info.rope_applied ? "true" : "false"},
      {"rope_theta", std::to_string(cache.info.rope_theta)},
  };
  const auto bytes = build_safetensors(tensors, meta);
  write_file_atomically(path, bytes.data(), bytes.size());
}

kv::KVCache load_cache(const std::filesystem::path& path) {
  SafetensorsFile file(path);
  const std::string label = path.string();
  int layers = 0;
  while (file.find(tensor_name(layers, kv::Kind::Key)) != nullptr) ++layers;
  if (layers == 0) throw Error(ErrorCode::Format, label, "no tensor 'layers.0.key': not a KV cache file");
  const auto& first = file.get(tensor_name(0, kv::Kind::Key));
  if (first.shape.size() != 3)
    throw Error(ErrorCode::Format, label, "tensor 'layers.0.key' must be [kv_heads, tokens, head_dim]");
  kv::CacheShape shape{layers, int(first.shape[0]), int(first.shape[1]), int(first.shape[2])};
  if (shape.kv_heads <= 0 || shape.head_dim <= 0)
    throw Error(ErrorCode::Format, label, "tensor 'layers.0.key' has an empty head or dim axis");
  kv::KVCache cache(shape);
  for (int l = 0; l < layers; ++l) {
    for (kv::Kind k : kv::kKinds) {
      const auto& t = file.get(tensor_name(l, k));
      if (t.shape != first.shape)
        throw Error(ErrorCode::Format, label, "tensor '" + t.name + "' has a different shape than 'layers.0.key'");
      const auto values = file.to_float(t);
      std::copy(values.begin(), values.end(), cache.tensor(l, k).begin());
    }
  }
  auto read_ids = [&](const char* name, std::vector<std::int32_t>& dst) {
    const auto* t = file.find(name);
    if (t == nullptr) return;
    if (t->dtype != "I32" || t->elements() != shape.tokens)
      throw Error(ErrorCode::Format, label, std::string("tensor '") + name + "' must be I32 with one entry per token");
    dst.resize(shape.tokens);
    std::memcpy(dst.data(), t->bytes.data(), t->bytes.size());
  };
  read_ids("token_ids", cache.info.token_ids);
  read_ids("positions", cache.info.positions);
  if (const auto* t = file.find("rope_inv_freq")) {
    const std::size_t half = std::size_t(shape.head_dim / 2);
    if (t->dtype != "F64" || t->shape.size() != 2 || t->shape[0] != layers || std::size_t(t->shape[1]) != half ||
        shape.head_dim % 2 != 0)
      throw Error(ErrorCode::Format, label, "tensor 'rope_inv_freq' must be F64 [layers, head_dim/2]");
    cache.info.rope_inv_freq.assign(std::size_t(layers), std::vector<double>(half));
    for (int l = 0; l < layers; ++l) {
      auto& table = cache.info.rope_inv_freq[std::size_t(l)];
      std::memcpy(table.data(), t->bytes.data() + std::size_t(l) * half * 8, half * 8);
      for (double f : table)
        if (!std::isfinite(f)) throw Error(ErrorCode::Format, label, "tensor 'rope_inv_freq' holds a non-finite value");
    }
  }
  if (const auto* t = file.find("layer_window")) {
    if (t->dtype != "I32" || t->elements() != layers)
      throw Error(ErrorCode::Format, label, "tensor 'layer_window' must be I32 with one entry per layer");
    cache.info.layer_window.resize(std::size_t(layers));
    std::memcpy(cache.info.layer_window.data(), t->bytes.data(), t->bytes.size());
    for (auto w : cache.info.layer_window)
      if (w < 0) throw Error(ErrorCode::Format, label, "tensor 'layer_window' holds a negative window");
  }
  const auto& meta = file.metadata();
  auto get = [&](const char* key) { auto it = meta.find(key); return it == meta.end() ? std::string() : it->second; };
  cache.info.model_name = get("model");
  cache.info.architecture = get("architecture");
  cache.info.model_sha256 = get("model_sha256");
  cache.info.rope_applied = get("rope_applied") != "false";
  if (const auto theta = get("rope_theta"); !theta.empty()) {
    try {
      cache.info.rope_theta = std::stod(theta);
    } catch (...) {
      throw Error(ErrorCode::Format, label, "metadata rope_theta is not a number");
    }
  }
  return cache;
}

}  // namespace kvscope::io
