#pragma once

// The model runtime: loads a Llama-family model (GGUF or a Hugging Face
// folder), prefills a context into a KV cache, and continues from a supplied
// cache. This header is torch-free (pimpl) so Qt translation units can
// include it; libtorch stays inside core/model/src.

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
  std::string architecture;    ///< "llama", "qwen2", "mistral" ...
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
  ProgressFn progress;
};

struct PrefillOptions {
  /// Also return keys before RoPE (what transform coders need).
  bool keep_pre_rope_keys = false;
  /// Return the logits of the last token (vocab floats).
  bool want_last_logits = true;
  ProgressFn progress;  ///< reported per layer; false cancels (Error(Cancelled))
};

struct PrefillResult {
  /// Keys after RoPE and values, float32 [layer][K|V][kv_head][token][dim].
  /// cache.info: model name, architecture, hash (if computed), rope_theta,
  /// rope_applied = true, token ids and positions 0..T-1.
  kv::KVCache cache;
  /// Keys before RoPE (values identical to `cache`), rope_applied = false;
  /// set only when PrefillOptions::keep_pre_rope_keys.
  std::optional<kv::KVCache> pre_rope;
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
  /// Loads a model: a `.gguf` file (v2/v3; tensor types F32, F16, BF16,
  /// Q8_0, Q4_0, Q4_1 dequantized at load) or a Hugging Face folder
  /// (config.json + model.safetensors or model.safetensors.index.json +
  /// tokenizer.json). Errors (all naming the file): Error(Io) unreadable,
  /// Error(Format) malformed/truncated/inconsistent, Error(Unsupported) an
  /// architecture or tensor type outside the Llama family / the list above,
  /// Error(Cancelled) when `progress` returns false, Error(InvalidArgument)
  /// for device "cuda" without CUDA.
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
