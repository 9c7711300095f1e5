// SPDX-License-Identifier: Apache-2.0
// Model weights, config and tokenizer from a Hugging Face folder:
// config.json, tokenizer.json, model.safetensors or a sharded set listed in
// model.safetensors.index.json.
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/safetensors.h"
#include "weight_source.h"

namespace kvscope::model::detail {
namespace {

using nlohmann::json;

constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

json read_json(const std::filesystem::path& p) {
  const std::string text = kvscope::read_file(p);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::Format, p.string(), std::string("invalid JSON: ") + e.what());
  }
}

// Canonical name -> Hugging Face tensor name for an architecture, with the
// checkpoint's prefix of decoder tensors ("model." or, in Gemma 3's
// multimodal checkpoints, "language_model.model.").
std::string hf_name(const std::string& canonical, const std::string& arch, const std::string& prefix) {
  if (canonical == "token_embd") return prefix + "embed_tokens.weight";
  if (canonical == "output_norm") return prefix + "norm.weight";
  if (canonical == "output") return "lm_head.weight";
  static const std::map<std::string, std::string> common = {
      {"attn_norm", "input_layernorm.weight"},    {"attn_q", "self_attn.q_proj.weight"},
      {"attn_k", "self_attn.k_proj.weight"},      {"attn_v", "self_attn.v_proj.weight"},
      {"attn_output", "self_attn.o_proj.weight"}, {"ffn_gate", "mlp.gate_proj.weight"},
      {"ffn_up", "mlp.up_proj.weight"},           {"ffn_down", "mlp.down_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},   {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},   {"attn_q_norm", "self_attn.q_norm.weight"},
      {"attn_k_norm", "self_attn.k_norm.weight"}, {"ffn_norm", "post_attention_layernorm.weight"}};
  // Gemma's "post_attention_layernorm" follows attention; its MLP has its own pre-norm.
  static const std::map<std::string, std::string> gemma = {
      {"post_attention_norm", "post_attention_layernorm.weight"},
      {"ffn_norm", "pre_feedforward_layernorm.weight"},
      {"post_ffw_norm", "post_feedforward_layernorm.weight"}};
  static const std::map<std::string, std::string> phi3 = {{"attn_qkv", "self_attn.qkv_proj.weight"},
                                                          {"ffn_up", "mlp.gate_up_proj.weight"}};
  // "blk.{i}.{rest}"
  if (canonical.rfind("blk.", 0) == 0) {
    const auto dot = canonical.find('.', 4);
    if (dot != std::string::npos) {
      const std::string rest = canonical.substr(dot + 1);
      const std::string layer = prefix + "layers." + canonical.substr(4, dot - 4) + ".";
      const bool is_gemma = arch == "gemma2" || arch == "gemma3";
      if (is_gemma) {
        if (auto it = gemma.find(rest); it != gemma.end()) return layer + it->second;
      }
      if (arch == "phi3") {
        if (auto it = phi3.find(rest); it != phi3.end()) return layer + it->second;
      }
      if (auto it = common.find(rest); it != common.end()) return layer + it->second;
    }
  }
  return canonical;
}

std::optional<std::uint32_t> ggml_type_of(const std::string& dtype) {
  if (dtype == "F32") return 0u;
  if (dtype == "F16") return 1u;
  if (dtype == "BF16") return 30u;
  return std::nullopt;
}

class HfSource : public WeightSource {
 public:
  HfSource(std::filesystem::path dir, std::vector<io::SafetensorsFile> files, std::string arch)
      : dir_(std::move(dir)), files_(std::move(files)), arch_(std::move(arch)) {
    for (std::size_t i = 0; i < files_.size(); ++i) {
      for (const auto& t : files_[i].tensors()) {
        if (!index_.emplace(t.name, i).second) {
          throw Error(ErrorCode::Format, files_[i].path().string(),
                      "tensor '" + t.name + "' appears in two shards");
        }
      }
    }
    // Gemma 3's multimodal checkpoints keep the text decoder under another prefix.
    for (const char* p : {"model.", "language_model.model.", "model.language_model."}) {
      if (index_.count(std::string(p) + "embed_tokens.weight")) {
        prefix_ = p;
        break;
      }
    }
  }
  bool has(const std::string& name) const override { return index_.count(file_name(name)) != 0; }
  std::vector<std::int64_t> shape(const std::string& name) const override { return tensor(name).shape; }
  void read(const std::string& name, std::span<float> out) const override {
    const auto& t = tensor(name);
    const auto& f = files_[index_.at(file_name(name))];
    if (static_cast<std::int64_t>(out.size()) != t.elements()) {
      throw Error(ErrorCode::Internal, f.path().string(),
                  "output size does not match tensor '" + t.name + "'");
    }
    const std::vector<float> v = f.to_float(t);
    std::copy(v.begin(), v.end(), out.begin());
    // Gemma's RMSNorm multiplies by (1 + w): resolve it to the plain factor.
    const bool gemma = arch_ == "gemma2" || arch_ == "gemma3";
    if (gemma && name.size() > 4 && name.compare(name.size() - 4, 4, "norm") == 0) {
      for (auto& x : out) x += 1.0f;
    }
  }
  StoredTensor stored(const std::string& name) const override {
    const auto& t = tensor(name);
    const auto type = ggml_type_of(t.dtype);
    if (!type) {
      throw Error(
          ErrorCode::Unsupported, files_[index_.at(file_name(name))].path().string(),
          "tensor '" + t.name + "' has dtype " + t.dtype + ", which is not supported (F32, F16, BF16)");
    }
    if (t.shape.size() != 2)
      throw Error(ErrorCode::Format, dir_.string(), "tensor '" + t.name + "' is not 2-D");
    return {*type, t.shape[0], t.shape[1], t.bytes};
  }
  bool qk_interleaved() const override { return false; }
  std::string label() const override { return dir_.string(); }
  std::int64_t parameter_count() const override {
    std::int64_t n = 0;
    for (const auto& f : files_) {
      for (const auto& t : f.tensors()) n += t.elements();
    }
    return n;
  }
  std::vector<std::pair<std::string, int>> tensor_types() const override {
    std::map<std::string, int> count;
    for (const auto& f : files_) {
      for (const auto& t : f.tensors()) ++count[t.dtype];
    }
    return {count.begin(), count.end()};
  }
  std::int64_t stored_bytes() const override {
    std::int64_t n = 0;
    for (const auto& f : files_) {
      for (const auto& t : f.tensors()) n += static_cast<std::int64_t>(t.bytes.size());
    }
    return n;
  }

 private:
  std::string file_name(const std::string& canonical) const { return hf_name(canonical, arch_, prefix_); }
  const io::SafetensorsTensor& tensor(const std::string& name) const {
    const std::string n = file_name(name);
    auto it = index_.find(n);
    if (it == index_.end()) throw Error(ErrorCode::Format, dir_.string(), "missing tensor '" + n + "'");
    return files_[it->second].get(n);
  }

  std::filesystem::path dir_;
  std::vector<io::SafetensorsFile> files_;
  std::string arch_;
  std::string prefix_ = "model.";
  std::map<std::string, std::size_t> index_;
};

int get_int(const json& j, const char* key, const std::string& label, bool required, int fallback = 0) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) throw Error(ErrorCode::Format, label, std::string("missing '") + key + "'");
    return fallback;
  }
  if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > (1 << 24)) {
    throw Error(ErrorCode::Format, label, std::string("'") + key + "' is not a valid integer");
  }
  return it->get<int>();
}

double get_num(const json& j, const char* key, const std::string& label, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw Error(ErrorCode::Format, label, std::string("'") + key + "' is not a number");
  return it->get<double>();
}

std::int32_t first_id(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return -1;
  if (it->is_number_integer()) return it->get<std::int32_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<std::int32_t>();
  return -1;
}

// Escapes a literal for PCRE2.
std::string regex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void collect_pre(const json& p, const std::string& label, TokenizerSpec& t, bool& byte_level,
                 bool& metaspace) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const auto& q : p.at("pretokenizers")) collect_pre(q, label, t, byte_level, metaspace);
  } else if (type == "ByteLevel") {
    byte_level = true;
    if (p.value("add_prefix_space", false)) {
      throw Error(ErrorCode::Unsupported, label, "ByteLevel add_prefix_space is not supported");
    }
    if (p.value("use_regex", true)) t.pre_split_regexes.emplace_back(kGpt2);
  } else if (type == "Split") {
    if (p.value("behavior", "") != "Isolated" || p.value("invert", false)) {
      throw Error(ErrorCode::Unsupported, label,
                  "only Isolated, non-inverted Split pre-tokenizers are supported");
    }
    const auto& pat = p.at("pattern");
    if (pat.contains("Regex"))
      t.pre_split_regexes.push_back(pat.at("Regex").get<std::string>());
    else
      t.pre_split_regexes.push_back(regex_escape(pat.at("String").get<std::string>()));
  } else if (type == "Digits") {
    t.pre_split_regexes.emplace_back(p.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Metaspace") {
    metaspace = true;
    t.add_space_prefix =
        p.value("prepend_scheme", std::string("always")) != "never" && p.value("add_prefix_space", true);
  } else {
    throw Error(ErrorCode::Unsupported, label, "pre-tokenizer '" + type + "' is not supported");
  }
}

TokenizerSpec read_tokenizer(const std::filesystem::path& path, const json& config) {
  const json j = read_json(path);
  const std::string label = path.string();
  TokenizerSpec t;
  try {
    const auto& model = j.at("model");
    if (model.value("type", "BPE") != "BPE") {
      throw Error(ErrorCode::Unsupported, label,
                  "tokenizer model '" + model.value("type", "") + "' is not supported (BPE)");
    }
    std::int64_t max_id = -1;
    for (const auto& [tok, id] : model.at("vocab").items())
      max_id = std::max<std::int64_t>(max_id, id.get<std::int64_t>());
    if (j.contains("added_tokens")) {
      for (const auto& a : j.at("added_tokens"))
        max_id = std::max<std::int64_t>(max_id, a.at("id").get<std::int64_t>());
    }
    if (max_id < 0 || max_id > (1 << 24))
      throw Error(ErrorCode::Format, label, "vocabulary ids out of range");
    t.tokens.assign(static_cast<std::size_t>(max_id + 1), std::string());
    t.token_types.assign(t.tokens.size(), 1);
    for (const auto& [tok, id] : model.at("vocab").items()) {
      const auto i = id.get<std::int64_t>();
      if (i < 0) throw Error(ErrorCode::Format, label, "negative token id");
      t.tokens[static_cast<std::size_t>(i)] = tok;
    }
    if (j.contains("added_tokens")) {
      for (const auto& a : j.at("added_tokens")) {
        const auto i = static_cast<std::size_t>(a.at("id").get<std::int64_t>());
        t.tokens[i] = a.at("content").get<std::string>();
        t.token_types[i] = a.value("special", false) ? 3 : 4;
        t.special_ids.push_back(static_cast<std::int32_t>(i));
      }
    }
    if (model.contains("merges")) {
      for (const auto& m : model.at("merges")) {
        if (m.is_string())
          t.merges.push_back(m.get<std::string>());
        else
          t.merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
      }
    }
    if (model.contains("unk_token") && model.at("unk_token").is_string()) {
      const std::string u = model.at("unk_token").get<std::string>();
      for (std::size_t i = 0; i < t.tokens.size(); ++i) {
        if (t.tokens[i] == u) t.unk_id = static_cast<std::int32_t>(i);
      }
    }
    bool byte_level = false, metaspace = false;
    if (j.contains("pre_tokenizer")) collect_pre(j.at("pre_tokenizer"), label, t, byte_level, metaspace);
    if (j.contains("decoder") && !j.at("decoder").is_null() &&
        j.at("decoder").value("type", "") == "ByteLevel") {
      byte_level = true;
    }
    const bool byte_fallback = model.value("byte_fallback", false);
    if (byte_level) {
      t.kind = TokenizerSpec::Kind::ByteLevelBpe;
    } else if (metaspace || byte_fallback) {
      t.kind = TokenizerSpec::Kind::SentencePieceBpe;
      t.pre_split_regexes.clear();
      // Llama 2 style normalizer: Prepend("▁") + Replace(" ", "▁").
      if (!metaspace) {
        const std::string dumped = j.contains("normalizer") ? j.at("normalizer").dump() : "";
        t.add_space_prefix = dumped.find("Prepend") != std::string::npos;
      }
      for (std::size_t i = 0; i < t.tokens.size(); ++i) {
        const auto& s = t.tokens[i];
        if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s.back() == '>') t.token_types[i] = 6;
      }
    } else {
      throw Error(ErrorCode::Unsupported, label,
                  "tokenizer is neither byte-level BPE nor SentencePiece-style BPE");
    }
    t.bos_id = first_id(config, "bos_token_id");
    t.eos_id = first_id(config, "eos_token_id");
    if (t.bos_id >= static_cast<std::int32_t>(t.tokens.size())) t.bos_id = -1;
    if (t.eos_id >= static_cast<std::int32_t>(t.tokens.size())) t.eos_id = -1;
    // BOS is added when the post-processor template starts with it.
    t.add_bos = false;
    if (j.contains("post_processor") && !j.at("post_processor").is_null() && t.bos_id >= 0) {
      const std::string dumped = j.at("post_processor").dump();
      t.add_bos =
          dumped.find("\"" + t.tokens[static_cast<std::size_t>(t.bos_id)] + "\"") != std::string::npos &&
          dumped.find("TemplateProcessing") != std::string::npos;
    }
  } catch (const json::exception& e) {
    throw Error(ErrorCode::Format, label, std::string("malformed tokenizer: ") + e.what());
  }
  return t;
}

}  // namespace

}  // namespace kvscope::model::detail

namespace kvscope::model {

TokenizerSpec tokenizer_spec_from_hf(const std::filesystem::path& tokenizer_json,
                                     const std::filesystem::path& config_json) {
  return detail::read_tokenizer(
      tokenizer_json, config_json.empty() ? nlohmann::json::object() : detail::read_json(config_json));
}

}  // namespace kvscope::model

namespace kvscope::model::detail {

OpenedModel open_hf(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  const json cfg = read_json(config_path);
  const std::string label = config_path.string();
  OpenedModel m;
  auto& c = m.config;
  c.path = dir;
  c.format = "safetensors";
  try {
    c.architecture = cfg.value("model_type", "");
    // Gemma 3's multimodal checkpoints nest the text model's config.
    const bool nested = c.architecture == "gemma3" && cfg.contains("text_config");
    const json& tc = nested ? cfg.at("text_config") : cfg;
    if (c.architecture == "gemma3_text") c.architecture = "gemma3";
    const std::string& a = c.architecture;
    if (!architecture_supported(a)) {
      throw Error(
          ErrorCode::Unsupported, label,
          "model_type '" + a + "' is not supported (supported: " + supported_architectures_text() + ")");
    }
    const bool gemma = a == "gemma2" || a == "gemma3";
    c.name = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
    c.layers = get_int(tc, "num_hidden_layers", label, true);
    c.hidden = get_int(tc, "hidden_size", label, true);
    c.intermediate = get_int(tc, "intermediate_size", label, true);
    c.heads = get_int(tc, "num_attention_heads", label, true);
    c.kv_heads = get_int(tc, "num_key_value_heads", label, false, c.heads);
    c.head_dim = get_int(tc, "head_dim", label, false, c.heads > 0 ? c.hidden / c.heads : 0);
    c.vocab = get_int(tc, "vocab_size", label, !nested, 262208);  // Gemma 3's default vocabulary
    c.context_length = get_int(tc, "max_position_embeddings", label, false, 0);
    c.rope_theta = get_num(tc, "rope_theta", label, 10000.0);
    c.rms_eps = get_num(tc, "rms_norm_eps", label, 1e-6);
    c.tied_embeddings = tc.value("tie_word_embeddings", cfg.value("tie_word_embeddings", gemma));
    const std::string act = tc.value(
        "hidden_activation", tc.value("hidden_act", std::string(gemma ? "gelu_pytorch_tanh" : "silu")));
    if (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast") {
      c.gelu = true;
    } else if (act != "silu" && act != "swish") {
      throw Error(ErrorCode::Unsupported, label,
                  "activation '" + act + "' is not supported (silu, gelu_pytorch_tanh)");
    }
    if (const double rot = get_num(tc, "partial_rotary_factor", label, 1.0); rot != 1.0) {
      throw Error(
          ErrorCode::Unsupported, label,
          "partial rotary embedding (partial_rotary_factor " + std::to_string(rot) + ") is not supported");
    }
    if (gemma) {
      c.sandwich_norms = true;
      c.embedding_scale = std::sqrt(static_cast<double>(c.hidden));
      c.attn_softcap = get_num(tc, "attn_logit_softcapping", label, 0.0);
      c.final_softcap = get_num(tc, "final_logit_softcapping", label, 0.0);
      c.attn_scale = 1.0 / std::sqrt(get_num(tc, "query_pre_attn_scalar", label, c.head_dim));
      if (a == "gemma3") c.rope_local_theta = get_num(tc, "rope_local_base_freq", label, 10000.0);
    }
    // Qwen2/3 configs name a window but switch it off with use_sliding_window.
    c.sliding_window =
        tc.value("use_sliding_window", true) ? get_int(tc, "sliding_window", label, false, 0) : 0;
    if (auto it = tc.find("layer_types"); it != tc.end() && it->is_array() && c.sliding_window > 0) {
      if (static_cast<int>(it->size()) != c.layers)
        throw Error(ErrorCode::Format, label, "layer_types does not list every layer");
      for (const auto& t : *it)
        c.layer_window.push_back(t.get<std::string>() == "sliding_attention" ? c.sliding_window : 0);
    } else if (a == "gemma3" && c.sliding_window > 0) {
      const int pattern = get_int(tc, "sliding_window_pattern", label, false, 6);
      for (int l = 0; l < c.layers; ++l)
        c.layer_window.push_back(pattern > 0 && (l + 1) % pattern == 0 ? 0 : c.sliding_window);
    }
    if (auto it = tc.find("rope_scaling"); it != tc.end() && !it->is_null()) {
      const std::string type = it->value("rope_type", it->value("type", std::string()));
      if (type == "llama3") {
        c.rope_scaling_type = "llama3";
        c.rope_scaling_factor = get_num(*it, "factor", label, 8.0);
        c.rope_low_freq_factor = get_num(*it, "low_freq_factor", label, 1.0);
        c.rope_high_freq_factor = get_num(*it, "high_freq_factor", label, 4.0);
        c.rope_original_context = get_int(*it, "original_max_position_embeddings", label, true);
      } else if (type == "linear") {
        c.rope_scaling_type = "linear";
        c.rope_scaling_factor = get_num(*it, "factor", label, 1.0);
      } else if ((type == "longrope" || type == "su") && a == "phi3") {
        // Phi-3 LongRoPE: the short-context factors (KVScope uses them at every
        // length) and the attention factor of transformers' longrope init.
        c.rope_scaling_type = "longrope";
        for (const auto& v : it->at("short_factor")) c.rope_short_factors.push_back(v.get<double>());
        c.rope_original_context =
            get_int(tc, "original_max_position_embeddings", label, false, c.context_length);
        const double factor = c.rope_original_context > 0 && c.context_length > 0
                                  ? get_num(*it, "factor", label,
                                            static_cast<double>(c.context_length) / c.rope_original_context)
                                  : 1.0;
        c.rope_attn_factor = get_num(
            *it, "attention_factor", label,
            factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(c.rope_original_context)));
      } else if (type != "default" && !type.empty()) {
        throw Error(ErrorCode::Unsupported, label, "rope scaling '" + type + "' is not supported");
      }
    }
    fill_layer_windows(c);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::Format, label, std::string("malformed config: ") + e.what());
  }
  validate_config(c, label);

  // Weights: one file, or the shards an index lists.
  std::vector<io::SafetensorsFile> files;
  const auto single = dir / "model.safetensors";
  const auto index = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (std::filesystem::exists(single, ec)) {
    files.emplace_back(single);
  } else if (std::filesystem::exists(index, ec)) {
    const json idx = read_json(index);
    std::vector<std::string> shards;
    try {
      for (const auto& [name, file] : idx.at("weight_map").items()) {
        const std::string f = file.get<std::string>();
        if (f.find('/') != std::string::npos || f.find("..") != std::string::npos) {
          throw Error(ErrorCode::Format, index.string(), "shard name '" + f + "' leaves the folder");
        }
        if (std::find(shards.begin(), shards.end(), f) == shards.end()) shards.push_back(f);
      }
    } catch (const json::exception& e) {
      throw Error(ErrorCode::Format, index.string(), std::string("malformed index: ") + e.what());
    }
    std::sort(shards.begin(), shards.end());
    for (const auto& s : shards) files.emplace_back(dir / s);
  } else {
    throw Error(ErrorCode::Io, dir.string(), "no model.safetensors or model.safetensors.index.json");
  }
  auto src = std::make_unique<HfSource>(dir, std::move(files), c.architecture);
  if (!src->has("output")) c.tied_embeddings = true;
  c.qkv_bias = src->has("blk.0.attn_q.bias");
  c.qk_norm = src->has("blk.0.attn_q_norm");
  if (std::error_code tec; !std::filesystem::exists(dir / "tokenizer.json", tec)) {
    throw Error(
        ErrorCode::Unsupported, dir.string(),
        std::string("no tokenizer.json: KVScope needs the model's tokenizer.json (Hugging Face "
                    "tokenizers format") +
            (std::filesystem::exists(dir / "tokenizer.model", tec) ? "; a tokenizer.model alone is not read"
                                                                   : "") +
            ")");
  }
  m.tokenizer = read_tokenizer(dir / "tokenizer.json", cfg);
  if (static_cast<int>(m.tokenizer.tokens.size()) > c.vocab) {
    throw Error(ErrorCode::Format, (dir / "tokenizer.json").string(),
                "tokenizer has more tokens than vocab_size");
  }
  c.parameter_count = src->parameter_count();
  m.weights = std::move(src);
  return m;
}

}  // namespace kvscope::model::detail
