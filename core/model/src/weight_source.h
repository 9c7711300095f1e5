#pragma once

// Private to core/model: a torch-free view of a model file's weights under
// canonical names, plus the config and tokenizer read from it. The torch
// side only sees this interface, so GGUF and Hugging Face folders share one
// forward pass.
//
// Canonical names: "token_embd", "output_norm", "output" (absent when tied),
// "blk.{i}.attn_norm", "blk.{i}.attn_q", "blk.{i}.attn_k", "blk.{i}.attn_v",
// "blk.{i}.attn_output", "blk.{i}.ffn_norm", "blk.{i}.ffn_gate",
// "blk.{i}.ffn_up", "blk.{i}.ffn_down", biases as "blk.{i}.attn_q.bias" etc.
// Shapes are row-major as PyTorch's nn.Linear stores them: [out, in].

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvscope/model/model.h"
#include "kvscope/model/tokenizer.h"

namespace kvscope::model::detail {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& name) const = 0;
  /// Row-major shape; Error(Format) naming the file when absent.
  virtual std::vector<std::int64_t> shape(const std::string& name) const = 0;
  /// Dequantizes/converts into `out` (size = product of shape).
  virtual void read(const std::string& name, std::span<float> out) const = 0;
  /// Whether Q/K rows are stored permuted for interleaved (GPT-J style) RoPE,
  /// as llama.cpp's converter does for the "llama" architecture.
  virtual bool qk_interleaved() const = 0;
  /// Names the file in errors.
  virtual std::string label() const = 0;
  /// Total parameter count over all tensors.
  virtual std::int64_t parameter_count() const = 0;
  /// Llama-3 style per-frequency divisors (GGUF rope_freqs), empty if none.
  virtual std::vector<float> rope_freq_factors() const { return {}; }
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

/// Regexes for a llama.cpp "tokenizer.ggml.pre" name; Error(Unsupported) if unknown.
std::vector<std::string> pre_tokenizer_regexes(const std::string& pre, const std::string& label);

}  // namespace kvscope::model::detail
