// SPDX-License-Identifier: Apache-2.0
#pragma once

// The model runtime: loads a decoder-only transformer (the Llama family,
// Qwen2/3, Gemma 2/3, Phi-3; GGUF or a Hugging Face folder), prefills a
// context into a KV cache, and continues from a supplied cache. This header is torch-free (pimpl) so Qt
// translation units can include it; libtorch stays inside core/model/src.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"
#include "kvscope/model/tokenizer.h"

namespace kvscope::model {

/// Dimensions and constants of a loaded model, all read from the file.
struct ModelConfig {
  std::string architecture;    ///< "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"
  std::string name;            ///< e.g. "SmolLM2-135M-Instruct" (file's general.name, else file stem)
  std::filesystem::path path;  ///< the GGUF file or the HF folder
  std::string format;          ///< "gguf" or "safetensors"
  int layers = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int hidden = 0;
  int intermediate = 0;
  int vocab = 0;
  int context_length = 0;  ///< trained context length (0 if unknown)
  double rope_theta = 10000.0;
  double rms_eps = 1e-5;
  bool tied_embeddings = false;
  bool qkv_bias = false;  ///< Qwen2
  /// RoPE scaling: "" (none), "linear" (positions / factor) or "llama3"
  /// (per-frequency, Llama 3.1 style, with the low/high factors and the
  /// original context length).
  std::string rope_scaling_type;
  double rope_scaling_factor = 0.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int rope_original_context = 0;
  std::int64_t parameter_count = 0;

  // Architecture features beyond Llama (all read from the file).
  bool qk_norm = false;          ///< RMSNorm of each query and key head before RoPE (Qwen3, Gemma 3)
  bool sandwich_norms = false;   ///< extra norms after attention and after the MLP (Gemma 2/3)
  bool gelu = false;             ///< MLP gate activation GELU (tanh approximation) instead of SiLU (Gemma)
  double embedding_scale = 1.0;  ///< token embeddings are multiplied by this (Gemma: sqrt(hidden))
  double attn_softcap = 0.0;     ///< scores become c * tanh(s / c) before the mask (Gemma 2); 0 = none
  double final_softcap = 0.0;    ///< logits become c * tanh(l / c) (Gemma 2); 0 = none
  double attn_scale = 0.0;       ///< query scale; 0 = 1 / sqrt(head_dim)
  int sliding_window = 0;        ///< window of the sliding layers (0 = none)
  /// Per layer: 0 = full causal attention, W > 0 = sliding window (a query
  /// sees itself and the W - 1 tokens before it). Empty = all full.
  std::vector<int> layer_window;
  double rope_local_theta = 0.0;  ///< RoPE base of sliding-window layers when different (Gemma 3: 10000)
  /// RoPE scaling of Phi-3 "longrope": per-frequency divisors (the short-context set, used for
  /// every length) and a factor on the attention scores' query scale (sqrt of it on q and k).
  std::vector<double> rope_short_factors;
  double rope_attn_factor = 1.0;

  // What the loaded model holds (filled by Model::load).
  std::vector<std::pair<std::string, int>> tensor_types;  ///< each stored type and its tensor count
  std::int64_t file_weight_bytes = 0;                     ///< weights as stored in the file
  std::int64_t resident_weight_bytes = 0;  ///< weights this process holds (float32 copies or file views)
  std::string
      weight_storage;  ///< "float32" (dequantized at load) or "file" (dequantized per layer as it runs)

  /// Whether any layer uses a sliding window.
  bool has_sliding_window() const {
    for (int w : layer_window)
      if (w > 0) return true;
    return false;
  }

  /// KV cache bytes per token at fp16: layers * 2 * kv_heads * head_dim * 2.
  std::size_t kv_bytes_per_token() const {
    return static_cast<std::size_t>(layers) * 2 * kv_heads * head_dim * 2;
  }
};

/// SHA-256 (lowercase hex) of a model file, or for a folder of its weight
/// files in name order. Reads the whole file: call it once and keep it.
/// Error(Io) naming the file when it cannot be read.
std::string model_file_sha256(const std::filesystem::path& path);

struct LoadOptions {
  /// "auto" (CUDA if this libtorch has it and a GPU is present, else CPU), "cpu" or "cuda".
  std::string device = "auto";
  /// Torch intra-op threads; 0 = one, leaving every core to the BLAS library's
  /// threads, which do the matrix products (faster than both at full width).
  int threads = 0;
  /// Compute the file's SHA-256 at load (stored in config and cache info).
  bool hash_file = false;
  /// How weight matrices are held: "float32" dequantizes them at load (4
  /// bytes per parameter; fastest for small models and token-by-token
  /// generation), "file" keeps them in the file's type (memory-mapped) and
  /// dequantizes one layer at a time into a reused buffer as it runs, "auto"
  /// picks float32 when that copy takes at most `float32_budget_bytes`.
  std::string weights = "auto";
  std::int64_t float32_budget_bytes = 2ll << 30;
  ProgressFn progress;
};

/// How much an error in each K/V channel moves the attention output
/// (docs/bitstream.md, "cachegen channel weights"), [layer][kv_head][dim]
/// floats each, comparable within one layer and kind only:
///  - key: the mean over the context's tokens of the squared queries that
///    read the channel (pre-RoPE, summed over the KV head's query heads and
///    over both dimensions of a RoPE pair, which rotation mixes): an error e
///    in a key moves a score by q . e;
///  - value: the squared norm of the output projection's columns the channel
///    feeds, summed over those query heads: an error e in a value reaches the
///    residual stream as W_o e.
struct ChannelWeights {
  std::vector<float> key, value;
};

struct PrefillOptions {
  /// Also return keys before RoPE (what transform coders need).
  bool keep_pre_rope_keys = false;
  /// Also measure PrefillResult::channel_weights (one extra reduction per layer).
  bool measure_channel_weights = false;
  /// Return the logits of the last token (vocab floats).
  bool want_last_logits = true;
  ProgressFn progress;  ///< reported per layer; false cancels (Error(Cancelled))
};

struct PrefillResult {
  /// Keys after RoPE and values, float32 [layer][K|V][kv_head][token][dim].
  /// cache.info: model name, architecture, hash (if computed), rope_theta,
  /// rope_inv_freq (every layer's table, as rope_inv_freq(layer) gives it),
  /// layer_window (when any layer slides; ModelConfig::layer_window),
  /// rope_applied = true, token ids and positions 0..T-1. Sliding layers still
  /// hold every token's K/V; their queries only looked at the last W.
  kv::KVCache cache;
  /// Keys before RoPE (values identical to `cache`), rope_applied = false;
  /// set only when PrefillOptions::keep_pre_rope_keys.
  std::optional<kv::KVCache> pre_rope;
  /// Set only when PrefillOptions::measure_channel_weights.
  std::optional<ChannelWeights> channel_weights;
  /// Next-token logits after the last context token (vocab floats).
  std::vector<float> last_logits;
  double seconds = 0.0;
};

/// A loaded model. Thread-safety: every const member is safe to call from
/// several threads at once (weights are immutable; each call allocates its own
/// activations). Calls share torch's intra-op thread pool, so concurrent calls
/// are correct but not faster than one after another.
class Model {
 public:
  /// Loads a model: a `.gguf` file (v2/v3; tensor types as
  /// io::ggml_supported_types_text() lists) or a Hugging Face folder
  /// (config.json + model.safetensors or model.safetensors.index.json +
  /// tokenizer.json). Architectures: llama, mistral, qwen2, qwen3, gemma2,
  /// gemma3 (also gemma3_text), phi3. Errors (all naming the file):
  /// Error(Io) unreadable, Error(Format) malformed/truncated/inconsistent,
  /// Error(Unsupported) an architecture, tensor type or tokenizer outside
  /// those lists (the message names it and lists what is supported),
  /// Error(Cancelled) when `progress` returns false, Error(InvalidArgument)
  /// for device "cuda" without CUDA or an unknown `weights` mode.
  static std::unique_ptr<Model> load(const std::filesystem::path& path, const LoadOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;
  /// "cpu" or "cuda".
  std::string device() const;
  /// Torch intra-op threads in use (set at load; a process-wide setting).
  int threads() const;
  /// SHA-256 of the model file; computed on first call (reads the file) if
  /// not done at load.
  std::string file_sha256() const;
  /// The RoPE inverse frequencies layer `layer` applies (head_dim / 2 values,
  /// rotate-half pairs (i, i + head_dim / 2), the exact operations of
  /// kvscope/kv/rope.h), with the file's scaling;
  /// Error(InvalidArgument) for a layer out of range.
  std::vector<double> rope_inv_freq(int layer) const;

  /// Runs the context `tokens` (ids < vocab, at least one) at positions
  /// 0..T-1 and returns its KV cache. Error(InvalidArgument) on an empty
  /// input or an id out of range; Error(Cancelled) from progress.
  PrefillResult prefill(std::span<const std::int32_t> tokens, const PrefillOptions& options = {}) const;

  /// Teacher-forced continuation: feeds `tokens` at positions following the
  /// cache (last position in cache.info.positions + 1, else cache tokens) with
  /// attention over the supplied cache (which may be lossy/decoded), and
  /// returns logits [tokens.size() x vocab], row-major. If
  /// cache.info.rope_applied is false the cached keys are rotated first.
  /// Error(InvalidArgument) when the cache shape does not match the model or
  /// `tokens` is empty. An empty cache (0 tokens) is allowed.
  std::vector<float> continue_logits(const kv::KVCache& cache, std::span<const std::int32_t> tokens) const;

  /// How much attention each cached token draws: feeds `tokens` after the
  /// cache as continue_logits does and returns, for every layer and cached
  /// token ([layer][token], layers x cache tokens floats), the softmax weight
  /// the fed tokens' queries put on that token, averaged over query heads and
  /// fed tokens (a layer's weights sum to at most 1; the rest goes to the fed
  /// tokens themselves). Errors as continue_logits.
  std::vector<float> attention_to_cache(const kv::KVCache& cache, std::span<const std::int32_t> tokens) const;

  /// Extends a cache by `tokens` (non-empty): runs them at the positions
  /// following the cache (as continue_logits does) with attention over the
  /// supplied cache, which may be lossy/decoded, and returns the new tokens'
  /// KV only (keys after RoPE; info: token ids and positions of the new
  /// tokens) and the logits after the last one. What a receiver does to
  /// recompute a chunk on top of the prefix it holds. Errors as continue_logits.
  PrefillResult extend(const kv::KVCache& cache, std::span<const std::int32_t> tokens) const;

  /// Greedy generation: feeds `tokens` (non-empty) after the cache as
  /// continue_logits does, then appends the argmax token `n` times, each fed
  /// back. Returns only the `n` generated ids (fewer when `stop_at_eos` and
  /// EOS comes; EOS is then the last id). Error(InvalidArgument) as
  /// continue_logits, or n < 0.
  std::vector<std::int32_t> generate(const kv::KVCache& cache, std::span<const std::int32_t> tokens, int n,
                                     bool stop_at_eos = false) const;

 private:
  Model();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope::model
