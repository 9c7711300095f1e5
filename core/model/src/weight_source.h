// SPDX-License-Identifier: Apache-2.0
#pragma once

// Private to core/model: a torch-free view of a model file's weights under
// canonical names, plus the config and tokenizer read from it. The torch
// side only sees this interface, so GGUF and Hugging Face folders share one
// forward pass.
//
// Canonical names are GGUF's (llama.cpp's) without ".weight": "token_embd",
// "output_norm", "output" (absent when tied), and per layer "blk.{i}." +
// attn_norm, attn_q, attn_k, attn_v, attn_qkv (fused, Phi-3), attn_output,
// attn_q_norm, attn_k_norm (Qwen3, Gemma 3), post_attention_norm (Gemma),
// ffn_norm, ffn_gate, ffn_up (gate and up stacked when ffn_gate is absent,
// Phi-3), ffn_down, post_ffw_norm (Gemma); biases as "blk.{i}.attn_q.bias".
// Shapes are row-major as PyTorch's nn.Linear stores them: [out, in]. Norm
// weights are the factor the normalised activations are multiplied by
// (Gemma's Hugging Face "1 + w" is resolved by the source).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvscope/model/model.h"
#include "kvscope/model/tokenizer.h"

namespace kvscope::model::detail {

/// A tensor's bytes as stored, for weights kept in the file's type and
/// dequantized when they run: a ggml type (GGUF's own, or F32/F16/BF16 for
/// safetensors) and the rows of a row-major [rows, cols] matrix, each row a
/// whole number of blocks. `bytes` points into the file's mapping, valid
/// while the WeightSource lives.
struct StoredTensor {
  std::uint32_t ggml_type = 0;
  std::int64_t rows = 0, cols = 0;
  std::span<const std::uint8_t> bytes;
  std::size_t row_bytes() const { return rows ? bytes.size() / static_cast<std::size_t>(rows) : 0; }
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& name) const = 0;
  /// Row-major shape; Error(Format) naming the file when absent.
  virtual std::vector<std::int64_t> shape(const std::string& name) const = 0;
  /// Dequantizes/converts into `out` (size = product of shape).
  virtual void read(const std::string& name, std::span<float> out) const = 0;
  /// The stored bytes of a 2-D tensor; Error(Unsupported) naming the tensor,
  /// its type and the file when that type cannot be dequantized.
  virtual StoredTensor stored(const std::string& name) const = 0;
  /// Whether Q/K rows are stored permuted for interleaved (GPT-J style) RoPE,
  /// as llama.cpp's converter does for the "llama" architecture.
  virtual bool qk_interleaved() const = 0;
  /// Names the file in errors.
  virtual std::string label() const = 0;
  /// Total parameter count over all tensors.
  virtual std::int64_t parameter_count() const = 0;
  /// Each tensor type present with its tensor count, e.g. {"Q4_K", 120}.
  virtual std::vector<std::pair<std::string, int>> tensor_types() const = 0;
  /// Bytes of all weight tensors as stored in the file.
  virtual std::int64_t stored_bytes() const = 0;
  /// Llama-3 style per-frequency divisors (GGUF rope_freqs), empty if none.
  virtual std::vector<float> rope_freq_factors() const { return {}; }
  /// Phi-3 LongRoPE short-context divisors (GGUF rope_factors_short), empty if none.
  virtual std::vector<float> rope_short_factors() const { return {}; }
};

struct OpenedModel {
  std::unique_ptr<WeightSource> weights;
  ModelConfig config;
  TokenizerSpec tokenizer;
};

/// A .gguf file. Errors name the file.
OpenedModel open_gguf(const std::filesystem::path& path);
/// A Hugging Face folder (config.json, tokenizer.json, safetensors).
OpenedModel open_hf(const std::filesystem::path& dir);
/// Dispatches on the path (folder -> HF, else GGUF by magic).
OpenedModel open_model(const std::filesystem::path& path);

/// Checks dims for consistency (heads * head_dim etc.); Error(Format) naming the file.
void validate_config(const ModelConfig& c, const std::string& label);

/// Whether the runtime implements the architecture ("llama", "gemma3", ...),
/// and the list of those it does, for error messages.
bool architecture_supported(const std::string& architecture);
std::string supported_architectures_text();

/// Fills the per-layer window list from the architecture's pattern (Gemma 2:
/// even layers slide; Gemma 3: all but every sixth; others: all layers when
/// a window is set). Leaves an already filled list alone.
void fill_layer_windows(ModelConfig& c);

/// Regexes for a llama.cpp "tokenizer.ggml.pre" name; Error(Unsupported) if unknown.
std::vector<std::string> pre_tokenizer_regexes(const std::string& pre, const std::string& label);

}  // namespace kvscope::model::detail
