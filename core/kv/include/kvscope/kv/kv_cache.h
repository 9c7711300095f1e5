// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kvscope::kv {

/// Which half of a layer's cache.
enum class Kind : int { Key = 0, Value = 1 };
inline constexpr Kind kKinds[] = {Kind::Key, Kind::Value};
inline const char* to_string(Kind kind) { return kind == Kind::Key ? "key" : "value"; }

/// Shape of a KV cache. A "channel" is one (kv_head, dim) pair.
struct CacheShape {
  int layers = 0;
  int kv_heads = 0;
  int tokens = 0;
  int head_dim = 0;

  int channels() const { return kv_heads * head_dim; }
  /// Values in one [kv_heads, tokens, head_dim] tensor.
  std::size_t tensor_elements() const {
    return static_cast<std::size_t>(kv_heads) * tokens * head_dim;
  }
  /// Values in the whole cache (both K and V of every layer).
  std::size_t elements() const { return tensor_elements() * 2 * static_cast<std::size_t>(layers); }
  /// Size of the cache stored as fp16, the reference every ratio is quoted against.
  std::size_t fp16_bytes() const { return elements() * 2; }
  bool operator==(const CacheShape&) const = default;
};

/// Where a cache came from; carried through encode/decode, files and reports.
struct CacheInfo {
  std::string model_name;    ///< e.g. "SmolLM2-135M-Instruct"
  std::string architecture;  ///< e.g. "llama"
  std::string model_sha256;  ///< hash of the model file, empty if unknown
  bool rope_applied = true;  ///< keys stored after RoPE (what serving stacks keep)
  double rope_theta = 10000.0;
  /// RoPE inverse frequencies the model used, per layer: empty (plain RoPE from
  /// rope_theta for every layer, see kvscope/kv/rope.h) or one table per layer of
  /// head_dim/2 binary64 entries (scaled RoPE, per-layer bases as in Gemma 3).
  std::vector<std::vector<double>> rope_inv_freq;
  /// Attention span per layer: empty (every layer attends to all earlier
  /// tokens) or one entry per layer, 0 = full attention, W > 0 = the layer only
  /// attends to the last W tokens (sliding-window layers).
  std::vector<std::int32_t> layer_window;
  std::vector<std::int32_t> token_ids;  ///< empty, or one per token
  std::vector<std::int32_t> positions;  ///< empty, or one per token
};

/// A KV cache held as float32 in one contiguous buffer laid out
/// [layer][kind][kv_head][token][dim]; each (layer, kind) slice is a
/// [kv_heads, tokens, head_dim] tensor (docs/architecture.md, "The KV cache").
class KVCache {
 public:
  KVCache() = default;
  /// Zero-filled cache. Throws Error(InvalidArgument) on a negative dimension
  /// or a size that does not fit in memory arithmetic.
  explicit KVCache(const CacheShape& shape);

  const CacheShape& shape() const { return shape_; }
  bool empty() const { return data_.empty(); }

  /// All values, in the layout above.
  std::span<float> data() { return data_; }
  std::span<const float> data() const { return data_; }

  /// One [kv_heads, tokens, head_dim] tensor. Preconditions: 0 <= layer < layers.
  std::span<float> tensor(int layer, Kind kind);
  std::span<const float> tensor(int layer, Kind kind) const;

  /// Element access, unchecked except by assertions in debug builds.
  float& at(int layer, Kind kind, int head, int token, int dim) {
    return data_[index(layer, kind, head, token, dim)];
  }
  float at(int layer, Kind kind, int head, int token, int dim) const {
    return data_[index(layer, kind, head, token, dim)];
  }
  /// Access by channel c = head * head_dim + dim.
  float channel_value(int layer, Kind kind, int token, int channel) const {
    return at(layer, kind, channel / shape_.head_dim, token, channel % shape_.head_dim);
  }
  float& channel_value(int layer, Kind kind, int token, int channel) {
    return at(layer, kind, channel / shape_.head_dim, token, channel % shape_.head_dim);
  }

  std::size_t index(int layer, Kind kind, int head, int token, int dim) const {
    return (((static_cast<std::size_t>(layer) * 2 + static_cast<int>(kind)) * shape_.kv_heads + head) *
                shape_.tokens +
            token) *
               shape_.head_dim +
           dim;
  }

  /// Tokens [begin, end) as a new cache (token ids and positions sliced too).
  /// Throws Error(InvalidArgument) unless 0 <= begin <= end <= tokens.
  KVCache slice_tokens(int begin, int end) const;

  /// Concatenates caches along the token axis. All parts must have equal
  /// layers, kv_heads and head_dim (else Error(InvalidArgument)); info is
  /// taken from the first part, token ids and positions are concatenated.
  static KVCache concat_tokens(std::span<const KVCache> parts);

  /// Rounds every value to the nearest fp16 value (what a fp16 cache holds).
  void round_to_fp16();

  CacheInfo info;

 private:
  CacheShape shape_;
  std::vector<float> data_;
};

/// Largest absolute difference between two caches of equal shape
/// (Error(InvalidArgument) when shapes differ).
float max_abs_difference(const KVCache& a, const KVCache& b);

}  // namespace kvscope::kv
