// SPDX-License-Identifier: Apache-2.0
// Model weights, config and tokenizer from a GGUF file (llama.cpp's format).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include "kvscope/common/error.h"
#include "kvscope/io/gguf.h"
#include "weight_source.h"

namespace kvscope::model::detail {
namespace {

constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class GgufSource : public WeightSource {
 public:
  explicit GgufSource(io::GgufFile file, bool interleaved)
      : file_(std::move(file)), interleaved_(interleaved) {}

  bool has(const std::string& name) const override { return find(name) != nullptr; }
  std::vector<std::int64_t> shape(const std::string& name) const override { return get(name).shape(); }
  void read(const std::string& name, std::span<float> out) const override {
    file_.dequantize_into(get(name), out);
  }
  StoredTensor stored(const std::string& name) const override {
    const auto& t = get(name);
    if (!io::ggml_type_supported(t.type)) {
      throw Error(ErrorCode::Unsupported, file_.label(),
                  "tensor '" + t.name + "' has type " + io::ggml_type_name(t.type) +
                      ", which is not supported (supported: " + io::ggml_supported_types_text() + ")");
    }
    const auto shape = t.shape();
    if (shape.size() != 2)
      throw Error(ErrorCode::Format, file_.label(), "tensor '" + t.name + "' is not 2-D");
    return {t.type, shape[0], shape[1], t.bytes};
  }
  bool qk_interleaved() const override { return interleaved_; }
  std::string label() const override { return file_.label(); }
  std::int64_t parameter_count() const override {
    std::int64_t n = 0;
    for (const auto& t : file_.tensors()) {
      if (!is_rope_table(t.name)) n += static_cast<std::int64_t>(t.elements);
    }
    return n;
  }
  std::vector<std::pair<std::string, int>> tensor_types() const override {
    std::map<std::uint32_t, int> count;
    for (const auto& t : file_.tensors()) ++count[t.type];
    std::vector<std::pair<std::string, int>> out;
    for (const auto& [type, n] : count) out.emplace_back(io::ggml_type_name(type), n);
    return out;
  }
  std::int64_t stored_bytes() const override {
    std::int64_t n = 0;
    for (const auto& t : file_.tensors()) n += static_cast<std::int64_t>(t.nbytes);
    return n;
  }
  std::vector<float> rope_freq_factors() const override { return small("rope_freqs.weight"); }
  std::vector<float> rope_short_factors() const override { return small("rope_factors_short.weight"); }

 private:
  static bool is_rope_table(const std::string& name) {
    return name == "rope_freqs.weight" || name.rfind("rope_factors_", 0) == 0;
  }
  std::vector<float> small(const std::string& name) const {
    const auto* t = file_.find(name);
    if (!t) return {};
    if (t->elements > (1u << 16))
      throw Error(ErrorCode::Format, file_.label(), "tensor '" + name + "' is too large");
    return file_.dequantize(*t);
  }
  // Canonical "blk.0.attn_q" -> "blk.0.attn_q.weight"; "....bias" unchanged.
  static std::string file_name(const std::string& name) {
    return name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0 ? name : name + ".weight";
  }
  const io::GgufTensor* find(const std::string& name) const { return file_.find(file_name(name)); }
  const io::GgufTensor& get(const std::string& name) const { return file_.get(file_name(name)); }

  io::GgufFile file_;
  bool interleaved_;
};

std::vector<std::string> strings_of(const io::GgufFile& f, const std::string& key, bool required) {
  const auto* v = f.find_value(key);
  if (!v) {
    if (required) throw Error(ErrorCode::Format, f.label(), "missing metadata '" + key + "'");
    return {};
  }
  if (v->type != io::GgufType::Array || v->array_type != io::GgufType::String) {
    throw Error(ErrorCode::Format, f.label(), "metadata '" + key + "' is not an array of strings");
  }
  return v->strings;
}

const io::GgufValue* numbers_of(const io::GgufFile& f, const std::string& key) {
  const auto* v = f.find_value(key);
  if (!v) return nullptr;
  if (v->type != io::GgufType::Array || v->array_type == io::GgufType::String ||
      v->array_type == io::GgufType::Array) {
    throw Error(ErrorCode::Format, f.label(), "metadata '" + key + "' is not an array of numbers");
  }
  return v;
}

// "SmolLM2-135M-Instruct.Q4_1.gguf" -> "SmolLM2-135M-Instruct".
std::string name_from_file(const std::filesystem::path& path) {
  std::filesystem::path stem = path.stem();
  const std::string ext = stem.extension().string();
  if (ext.size() > 1 && (ext[1] == 'Q' || ext[1] == 'q' || ext.rfind(".F", 0) == 0 ||
                         ext.rfind(".BF", 0) == 0 || ext.rfind(".f", 0) == 0 || ext.rfind(".bf", 0) == 0)) {
    stem = stem.stem();
  }
  return stem.string();
}

}  // namespace

std::vector<std::string> pre_tokenizer_regexes(const std::string& pre, const std::string& label) {
  if (pre.empty() || pre == "default" || pre == "gpt-2" || pre == "gpt2") return {kGpt2};
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" || pre == "smaug-bpe")
    return {kLlama3};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return {kQwen2};
  // SmolLM2/StarCoder: digits split one by one, then GPT-2's regex.
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell")
    return {R"(\p{N})", kGpt2};
  throw Error(ErrorCode::Unsupported, label, "tokenizer pre-tokenizer '" + pre + "' is not supported");
}

OpenedModel open_gguf(const std::filesystem::path& path) {
  io::GgufFile f(path);
  const std::string label = f.label();
  OpenedModel m;
  auto& c = m.config;
  c.path = path;
  c.format = "gguf";
  c.architecture = f.get_string("general.architecture").value_or("");
  const std::string& a = c.architecture;
  if (!architecture_supported(a)) {
    throw Error(
        ErrorCode::Unsupported, label,
        "architecture '" + a + "' is not supported (supported: " + supported_architectures_text() + ")");
  }
  auto req_int = [&](const std::string& key) {
    auto v = f.get_int(a + "." + key);
    if (!v) throw Error(ErrorCode::Format, label, "missing metadata '" + a + "." + key + "'");
    if (*v <= 0 || *v > (1 << 24))
      throw Error(ErrorCode::Format, label, "metadata '" + a + "." + key + "' out of range");
    return static_cast<int>(*v);
  };
  c.name = name_from_file(path);
  c.layers = req_int("block_count");
  c.hidden = req_int("embedding_length");
  c.intermediate = req_int("feed_forward_length");
  c.heads = req_int("attention.head_count");
  c.kv_heads = f.get_int(a + ".attention.head_count_kv") ? req_int("attention.head_count_kv") : c.heads;
  c.head_dim = f.get_int(a + ".attention.key_length") ? req_int("attention.key_length") : c.hidden / c.heads;
  c.context_length = static_cast<int>(f.get_int(a + ".context_length").value_or(0));
  c.rope_theta = f.get_float(a + ".rope.freq_base").value_or(10000.0);
  c.rms_eps = f.get_float(a + ".attention.layer_norm_rms_epsilon").value_or(1e-5);
  if (auto st = f.get_string(a + ".rope.scaling.type"); st && *st != "none") {
    if (*st == "linear") {
      c.rope_scaling_factor = f.get_float(a + ".rope.scaling.factor").value_or(0.0);
      c.rope_scaling_type = "linear";
    } else {
      throw Error(ErrorCode::Unsupported, label, "rope scaling '" + *st + "' is not supported");
    }
  }
  if (auto rot = f.get_int(a + ".rope.dimension_count"); rot && *rot != c.head_dim) {
    throw Error(ErrorCode::Unsupported, label,
                "partial rotary embedding (RoPE on " + std::to_string(*rot) + " of " +
                    std::to_string(c.head_dim) + " channels) is not supported");
  }
  const auto& embd = f.get("token_embd.weight");
  if (embd.dims.size() != 2) throw Error(ErrorCode::Format, label, "token_embd.weight is not 2-D");
  c.vocab = static_cast<int>(embd.dims[1]);
  c.tied_embeddings = f.find("output.weight") == nullptr;
  c.qkv_bias = f.find("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = f.find("blk.0.attn_q_norm.weight") != nullptr;
  const int window = static_cast<int>(f.get_int(a + ".attention.sliding_window").value_or(0));
  if (window < 0) throw Error(ErrorCode::Format, label, "negative sliding window");
  if (a == "gemma2" || a == "gemma3") {
    c.sandwich_norms = true;
    c.gelu = true;
    c.embedding_scale = std::sqrt(static_cast<double>(c.hidden));
    c.attn_softcap = f.get_float(a + ".attn_logit_softcapping").value_or(0.0);
    c.final_softcap = f.get_float(a + ".final_logit_softcapping").value_or(0.0);
    // llama.cpp's rule (GGUF has no query_pre_attn_scalar): the 27B models
    // scale queries by hidden / heads, the others by head_dim.
    const bool is_27b = (a == "gemma2" && c.layers == 46) || (a == "gemma3" && c.layers == 62);
    c.attn_scale = 1.0 / std::sqrt(is_27b ? static_cast<double>(c.hidden) / c.heads : c.head_dim);
    c.sliding_window = window;
    if (a == "gemma3") c.rope_local_theta = 10000.0;  // fixed for Gemma 3's local layers
  } else if (a == "phi3") {
    c.sliding_window = window;
    if (f.find("rope_factors_short.weight")) {
      c.rope_scaling_type = "longrope";
      c.rope_original_context =
          static_cast<int>(f.get_int(a + ".rope.scaling.original_context_length").value_or(c.context_length));
      double attn_factor = f.get_float(a + ".rope.scaling.attn_factor").value_or(0.0);
      if (!(attn_factor > 0)) {
        const double scale = c.rope_original_context > 0
                                 ? static_cast<double>(c.context_length) / c.rope_original_context
                                 : 1.0;
        attn_factor =
            scale <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(scale) / std::log(c.rope_original_context));
      }
      c.rope_attn_factor = attn_factor;
    }
  }
  fill_layer_windows(c);

  // Tokenizer from tokenizer.ggml.*.
  auto& t = m.tokenizer;
  const auto tokenizer_model = f.get_string("tokenizer.ggml.model");
  if (!tokenizer_model) {
    throw Error(ErrorCode::Unsupported, label,
                "the file has no tokenizer (metadata 'tokenizer.ggml.model' is missing); KVScope needs the "
                "model's own tokenizer to turn text into tokens");
  }
  const std::string& tm = *tokenizer_model;
  if (tm == "gpt2") {
    t.kind = TokenizerSpec::Kind::ByteLevelBpe;
    t.pre_split_regexes =
        pre_tokenizer_regexes(f.get_string("tokenizer.ggml.pre").value_or("default"), label);
  } else if (tm == "llama") {
    t.kind = TokenizerSpec::Kind::SentencePieceBpe;
  } else {
    throw Error(
        ErrorCode::Unsupported, label,
        "tokenizer model '" + tm + "' is not supported (gpt2: byte-level BPE, llama: SentencePiece BPE)");
  }
  t.tokens = strings_of(f, "tokenizer.ggml.tokens", true);
  t.merges = strings_of(f, "tokenizer.ggml.merges", false);
  if (const auto* s = numbers_of(f, "tokenizer.ggml.scores")) {
    const auto n = s->numbers();
    t.scores.assign(n.begin(), n.end());
  }
  if (const auto* s = numbers_of(f, "tokenizer.ggml.token_type")) {
    for (auto v : s->ints()) t.token_types.push_back(static_cast<std::int32_t>(v));
  }
  auto id = [&](const char* key) { return static_cast<std::int32_t>(f.get_int(key).value_or(-1)); };
  t.bos_id = id("tokenizer.ggml.bos_token_id");
  t.eos_id = id("tokenizer.ggml.eos_token_id");
  t.unk_id = id("tokenizer.ggml.unknown_token_id");
  t.pad_id = id("tokenizer.ggml.padding_token_id");
  t.add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(tm == "llama");
  t.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(tm == "llama");
  if (static_cast<int>(t.tokens.size()) != c.vocab) {
    // The embedding may be padded beyond the tokenizer; never smaller.
    if (static_cast<int>(t.tokens.size()) > c.vocab) {
      throw Error(ErrorCode::Format, label, "tokenizer has more tokens than the embedding has rows");
    }
  }
  const bool interleaved = a == "llama" || a == "mistral";  // llama.cpp permutes Q/K only for these
  m.weights = std::make_unique<GgufSource>(std::move(f), interleaved);
  if (c.rope_scaling_type == "longrope") {
    const auto f32 = m.weights->rope_short_factors();
    c.rope_short_factors.assign(f32.begin(), f32.end());
  }
  validate_config(c, label);
  m.config.parameter_count = m.weights->parameter_count();
  return m;
}

bool architecture_supported(const std::string& a) {
  for (const char* s : {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"})
    if (a == s) return true;
  return false;
}

std::string supported_architectures_text() {
  return "llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3";
}

void fill_layer_windows(ModelConfig& c) {
  if (!c.layer_window.empty() || c.sliding_window <= 0) return;
  c.layer_window.assign(static_cast<std::size_t>(c.layers), 0);
  for (int l = 0; l < c.layers; ++l) {
    bool sliding = true;
    if (c.architecture == "gemma2") sliding = l % 2 == 0;
    if (c.architecture == "gemma3") sliding = (l + 1) % 6 != 0;
    c.layer_window[static_cast<std::size_t>(l)] = sliding ? c.sliding_window : 0;
  }
}

void validate_config(const ModelConfig& c, const std::string& label) {
  auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::Format, label, "inconsistent model config: " + what);
  };
  if (c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 || c.head_dim <= 0 || c.hidden <= 0 ||
      c.intermediate <= 0 || c.vocab <= 0) {
    bad("a dimension is not positive");
  }
  if (c.heads % c.kv_heads != 0) bad("heads is not a multiple of kv_heads");
  if (c.head_dim % 2 != 0) bad("head_dim is odd (RoPE needs pairs)");
  if (!(c.rope_theta > 0)) bad("rope theta is not positive");
  if (!(c.rms_eps > 0) || c.rms_eps > 1) bad("rms epsilon out of range");
  if (!c.layer_window.empty() && static_cast<int>(c.layer_window.size()) != c.layers)
    bad("the per-layer window list does not have one entry per layer");
  for (int w : c.layer_window)
    if (w < 0) bad("negative sliding window");
  if (!c.rope_short_factors.empty()) {
    if (static_cast<int>(c.rope_short_factors.size()) != c.head_dim / 2)
      bad("rope short factors are not head_dim / 2");
    for (double f : c.rope_short_factors)
      if (!(f > 0)) bad("a rope factor is not positive");
  }
  if (!(c.embedding_scale > 0) || !(c.rope_attn_factor > 0) || c.attn_softcap < 0 || c.final_softcap < 0 ||
      c.attn_scale < 0)
    bad("a scale or soft-capping value is out of range");
}

OpenedModel open_model(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return open_hf(path);
  if (!std::filesystem::exists(path, ec))
    throw Error(ErrorCode::Io, path.string(), "model file does not exist");
  if (path.filename() == "config.json") return open_hf(path.parent_path());
  return open_gguf(path);
}

}  // namespace kvscope::model::detail
