// Model weights, config and tokenizer from a GGUF file (llama.cpp's format).
#include <algorithm>
#include <fstream>

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
  bool qk_interleaved() const override { return interleaved_; }
  std::string label() const override { return file_.label(); }
  std::int64_t parameter_count() const override {
    std::int64_t n = 0;
    for (const auto& t : file_.tensors()) {
      if (t.name != "rope_freqs.weight") n += static_cast<std::int64_t>(t.elements);
    }
    return n;
  }
  std::vector<float> rope_freq_factors() const override {
    const auto* t = file_.find("rope_freqs.weight");
    return t ? file_.dequantize(*t) : std::vector<float>{};
  }

 private:
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
  if (a != "llama" && a != "qwen2" && a != "mistral") {
    throw Error(ErrorCode::Unsupported, label,
                "architecture '" + a + "' is not supported (the Llama family: llama, mistral, qwen2)");
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
  const auto& embd = f.get("token_embd.weight");
  if (embd.dims.size() != 2) throw Error(ErrorCode::Format, label, "token_embd.weight is not 2-D");
  c.vocab = static_cast<int>(embd.dims[1]);
  c.tied_embeddings = f.find("output.weight") == nullptr;
  c.qkv_bias = f.find("blk.0.attn_q.bias") != nullptr;

  // Tokenizer from tokenizer.ggml.*.
  auto& t = m.tokenizer;
  const std::string tm = f.get_string("tokenizer.ggml.model").value_or("");
  if (tm == "gpt2") {
    t.kind = TokenizerSpec::Kind::ByteLevelBpe;
    t.pre_split_regexes =
        pre_tokenizer_regexes(f.get_string("tokenizer.ggml.pre").value_or("default"), label);
  } else if (tm == "llama") {
    t.kind = TokenizerSpec::Kind::SentencePieceBpe;
  } else {
    throw Error(ErrorCode::Unsupported, label,
                "tokenizer model '" + tm + "' is not supported (gpt2 or llama)");
  }
  t.tokens = strings_of(f, "tokenizer.ggml.tokens", true);
  t.merges = strings_of(f, "tokenizer.ggml.merges", false);
  if (const auto* s = numbers_of(f, "tokenizer.ggml.scores"))
    t.scores.assign(s->numbers.begin(), s->numbers.end());
  if (const auto* s = numbers_of(f, "tokenizer.ggml.token_type")) {
    for (auto v : s->ints) t.token_types.push_back(static_cast<std::int32_t>(v));
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
  validate_config(c, label);
  const bool interleaved = a == "llama" || a == "mistral";  // llama.cpp permutes Q/K only for these
  m.weights = std::make_unique<GgufSource>(std::move(f), interleaved);
  m.config.parameter_count = m.weights->parameter_count();
  return m;
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
