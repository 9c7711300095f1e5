#pragma once

// Test helpers: write GGUF images and tiny random Llama models (GGUF and
// Hugging Face folders) so the model tests need no downloaded file.

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "kvscope/common/fp16.h"
#include "kvscope/io/safetensors.h"

namespace kvscope::test {

// ---- GGUF writing -------------------------------------------------------

struct GgufMeta {
  std::string key;
  std::uint32_t type;  // GGUF value type
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, std::vector<std::string>,
               std::vector<std::int32_t>, std::vector<float>>
      value;
};

struct GgufTensorIn {
  std::string name;
  std::vector<std::uint64_t> dims;  // ne order (dims[0] fastest)
  std::uint32_t type;
  std::vector<std::uint8_t> bytes;
};

class Bytes {
 public:
  template <typename T>
  void put(T v) {
    std::uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    data.insert(data.end(), b, b + sizeof(T));
  }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    data.insert(data.end(), s.begin(), s.end());
  }
  std::vector<std::uint8_t> data;
};

inline std::vector<std::uint8_t> build_gguf(const std::vector<GgufMeta>& meta,
                                            const std::vector<GgufTensorIn>& tensors,
                                            std::uint32_t version = 3, std::uint64_t alignment = 32) {
  Bytes b;
  b.put<std::uint32_t>(0x46554747u);
  b.put<std::uint32_t>(version);
  b.put<std::uint64_t>(tensors.size());
  b.put<std::uint64_t>(meta.size());
  for (const auto& m : meta) {
    b.str(m.key);
    b.put<std::uint32_t>(m.type);
    switch (m.type) {
      case 4:
        b.put<std::uint32_t>(static_cast<std::uint32_t>(std::get<std::uint64_t>(m.value)));
        break;
      case 5:
        b.put<std::int32_t>(static_cast<std::int32_t>(std::get<std::int64_t>(m.value)));
        break;
      case 6:
        b.put<float>(static_cast<float>(std::get<double>(m.value)));
        break;
      case 7:
        b.put<std::uint8_t>(std::get<bool>(m.value) ? 1 : 0);
        break;
      case 8:
        b.str(std::get<std::string>(m.value));
        break;
      case 9:
        if (auto* s = std::get_if<std::vector<std::string>>(&m.value)) {
          b.put<std::uint32_t>(8);
          b.put<std::uint64_t>(s->size());
          for (const auto& x : *s) b.str(x);
        } else if (auto* i = std::get_if<std::vector<std::int32_t>>(&m.value)) {
          b.put<std::uint32_t>(5);
          b.put<std::uint64_t>(i->size());
          for (auto x : *i) b.put<std::int32_t>(x);
        } else {
          const auto& f = std::get<std::vector<float>>(m.value);
          b.put<std::uint32_t>(6);
          b.put<std::uint64_t>(f.size());
          for (auto x : f) b.put<float>(x);
        }
        break;
      default:
        throw std::runtime_error("build_gguf: unsupported meta type in test writer");
    }
  }
  std::uint64_t offset = 0;
  std::vector<std::uint64_t> offsets;
  for (const auto& t : tensors) {
    offsets.push_back(offset);
    offset += (t.bytes.size() + alignment - 1) / alignment * alignment;
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    b.str(t.name);
    b.put<std::uint32_t>(static_cast<std::uint32_t>(t.dims.size()));
    for (auto d : t.dims) b.put<std::uint64_t>(d);
    b.put<std::uint32_t>(t.type);
    b.put<std::uint64_t>(offsets[i]);
  }
  while (b.data.size() % alignment) b.data.push_back(0);
  for (const auto& t : tensors) {
    b.data.insert(b.data.end(), t.bytes.begin(), t.bytes.end());
    while (b.data.size() % alignment) b.data.push_back(0);
  }
  return b.data;
}

// ---- quantizers (reference formulas, as ggml's quantize_row_*_ref) --------

inline void put_half(std::vector<std::uint8_t>& out, float v) {
  const std::uint16_t h = float_to_half(v);
  out.push_back(static_cast<std::uint8_t>(h & 0xFF));
  out.push_back(static_cast<std::uint8_t>(h >> 8));
}

inline std::vector<std::uint8_t> encode_f32(const std::vector<float>& x) {
  std::vector<std::uint8_t> out(x.size() * 4);
  std::memcpy(out.data(), x.data(), out.size());
  return out;
}
inline std::vector<std::uint8_t> encode_f16(const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (float v : x) put_half(out, v);
  return out;
}
inline std::vector<std::uint8_t> encode_bf16(const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (float v : x) {
    const std::uint16_t h = static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(v) >> 16);  // truncation
    out.push_back(static_cast<std::uint8_t>(h & 0xFF));
    out.push_back(static_cast<std::uint8_t>(h >> 8));
  }
  return out;
}
inline std::vector<std::uint8_t> encode_q8_0(const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (std::size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127.f, id = d ? 1.f / d : 0.f;
    put_half(out, d);
    for (int j = 0; j < 32; ++j)
      out.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(std::lround(x[b + j] * id))));
  }
  return out;
}
inline std::vector<std::uint8_t> encode_q4_0(const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (std::size_t b = 0; b < x.size(); b += 32) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[b + j]) > amax) {
        amax = std::fabs(x[b + j]);
        max = x[b + j];
      }
    }
    const float d = max / -8.f, id = d ? 1.f / d : 0.f;
    put_half(out, d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(x[b + j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(x[b + 16 + j] * id + 8.5f));
      out.push_back(static_cast<std::uint8_t>(q0 | (q1 << 4)));
    }
  }
  return out;
}
inline std::vector<std::uint8_t> encode_q4_1(const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (std::size_t b = 0; b < x.size(); b += 32) {
    float mn = x[b], mx = x[b];
    for (int j = 0; j < 32; ++j) {
      mn = std::min(mn, x[b + j]);
      mx = std::max(mx, x[b + j]);
    }
    const float d = (mx - mn) / 15.f, id = d ? 1.f / d : 0.f;
    put_half(out, d);
    put_half(out, mn);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>((x[b + j] - mn) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((x[b + 16 + j] - mn) * id + 0.5f));
      out.push_back(static_cast<std::uint8_t>(q0 | (q1 << 4)));
    }
  }
  return out;
}

// ---- a tiny random Llama ------------------------------------------------

struct TinyDims {
  int layers = 2, hidden = 64, heads = 4, kv_heads = 2, head_dim = 16, intermediate = 96;
  double rope_theta = 10000.0, rms_eps = 1e-5;
  bool tied = true;
  bool qkv_bias = false;  // Qwen2 style (written as architecture qwen2)
};

/// GPT-2 byte -> printable code point table, written out independently of
/// the tokenizer under test.
inline std::string byte_char(int b) {
  const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int cp = b;
  if (!direct) {
    int n = 0;
    for (int k = 0; k < b; ++k) {
      const bool dk = (k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF);
      if (!dk) ++n;
    }
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

/// Vocabulary: 256 byte tokens (id = byte), then "Ġt" 256, "he" 257,
/// "Ġthe" 258, "in" 259, "<|endoftext|>" 260 (EOS), "<|im_start|>" 261 (BOS).
struct TinyVocab {
  std::vector<std::string> tokens;
  std::vector<std::string> merges{"Ġ t", "h e", "Ġt he", "i n"};
  std::vector<std::int32_t> types;
  TinyVocab() {
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_char(b));
    for (const char* t : {"Ġt", "he", "Ġthe", "in", "<|endoftext|>", "<|im_start|>"}) tokens.emplace_back(t);
    types.assign(tokens.size(), 1);
    types[260] = types[261] = 3;
  }
};

/// Weights in Hugging Face layout ([out, in], Q/K rows in rotate_half order).
struct TinyWeights {
  TinyDims d;
  int vocab = 262;
  std::map<std::string, std::vector<float>> w;              // canonical names
  std::map<std::string, std::vector<std::uint64_t>> shape;  // row-major

  explicit TinyWeights(const TinyDims& dims, unsigned seed = 7) : d(dims) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 0.2f);
    auto add = [&](const std::string& n, std::vector<std::uint64_t> s, bool norm) {
      std::size_t count = 1;
      for (auto x : s) count *= x;
      std::vector<float> v(count);
      for (auto& x : v) x = norm ? 1.f + 0.1f * nd(rng) : nd(rng);
      w[n] = std::move(v);
      shape[n] = std::move(s);
    };
    const std::uint64_t H = d.hidden, Q = d.heads * d.head_dim, K = d.kv_heads * d.head_dim,
                        I = d.intermediate;
    add("token_embd", {static_cast<std::uint64_t>(vocab), H}, false);
    add("output_norm", {H}, true);
    if (!d.tied) add("output", {static_cast<std::uint64_t>(vocab), H}, false);
    for (int l = 0; l < d.layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      add(p + "attn_norm", {H}, true);
      add(p + "attn_q", {Q, H}, false);
      add(p + "attn_k", {K, H}, false);
      add(p + "attn_v", {K, H}, false);
      if (d.qkv_bias) {
        add(p + "attn_q.bias", {Q}, false);
        add(p + "attn_k.bias", {K}, false);
        add(p + "attn_v.bias", {K}, false);
      }
      add(p + "attn_output", {H, Q}, false);
      add(p + "ffn_norm", {H}, true);
      add(p + "ffn_gate", {I, H}, false);
      add(p + "ffn_up", {I, H}, false);
      add(p + "ffn_down", {H, I}, false);
    }
  }
};

/// llama.cpp's converter permutation of Q/K rows (HF -> GGUF):
/// row h*hd + i*2 + s takes HF row h*hd + s*hd/2 + i.
inline std::vector<float> permute_rows(const std::vector<float>& w, int heads, int head_dim,
                                       std::size_t cols) {
  std::vector<float> out(w.size());
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < head_dim / 2; ++i)
      for (int s = 0; s < 2; ++s) {
        const std::size_t dst = static_cast<std::size_t>(h * head_dim + i * 2 + s);
        const std::size_t src = static_cast<std::size_t>(h * head_dim + s * head_dim / 2 + i);
        std::memcpy(&out[dst * cols], &w[src * cols], cols * sizeof(float));
      }
  return out;
}

/// Writes `tw` as a GGUF model; 2-D weights stored as `matrix_type` (0 F32,
/// 1 F16, 30 BF16, 8 Q8_0, 2 Q4_0, 3 Q4_1). Returns the file bytes too.
inline std::vector<std::uint8_t> tiny_gguf_bytes(const TinyWeights& tw, std::uint32_t matrix_type = 0) {
  const auto& d = tw.d;
  const std::string arch = d.qkv_bias ? "qwen2" : "llama";
  TinyVocab v;
  std::vector<GgufMeta> meta = {
      {"general.architecture", 8, arch},
      {"general.name", 8, std::string("tiny")},
      {arch + ".block_count", 4, std::uint64_t(d.layers)},
      {arch + ".context_length", 4, std::uint64_t(256)},
      {arch + ".embedding_length", 4, std::uint64_t(d.hidden)},
      {arch + ".feed_forward_length", 4, std::uint64_t(d.intermediate)},
      {arch + ".attention.head_count", 4, std::uint64_t(d.heads)},
      {arch + ".attention.head_count_kv", 4, std::uint64_t(d.kv_heads)},
      {arch + ".rope.freq_base", 6, d.rope_theta},
      {arch + ".attention.layer_norm_rms_epsilon", 6, d.rms_eps},
      {"tokenizer.ggml.model", 8, std::string("gpt2")},
      {"tokenizer.ggml.pre", 8, std::string("default")},
      {"tokenizer.ggml.tokens", 9, v.tokens},
      {"tokenizer.ggml.token_type", 9, v.types},
      {"tokenizer.ggml.merges", 9, v.merges},
      {"tokenizer.ggml.bos_token_id", 4, std::uint64_t(261)},
      {"tokenizer.ggml.eos_token_id", 4, std::uint64_t(260)},
      {"tokenizer.ggml.add_bos_token", 7, false},
  };
  std::vector<GgufTensorIn> tensors;
  for (const auto& [name, values] : tw.w) {
    auto shape = tw.shape.at(name);
    std::vector<float> x = values;
    const bool is_bias = name.find(".bias") != std::string::npos;
    const bool interleave = arch == "llama";  // llama.cpp permutes Q/K only for llama
    if (interleave && (name.ends_with("attn_q") || name.ends_with("attn_k"))) {
      const int heads = name.ends_with("attn_q") ? d.heads : d.kv_heads;
      x = permute_rows(x, heads, d.head_dim, shape[1]);
    }
    std::uint32_t type = shape.size() == 2 ? matrix_type : 0;
    std::vector<std::uint8_t> bytes;
    switch (type) {
      case 0:
        bytes = encode_f32(x);
        break;
      case 1:
        bytes = encode_f16(x);
        break;
      case 30:
        bytes = encode_bf16(x);
        break;
      case 8:
        bytes = encode_q8_0(x);
        break;
      case 2:
        bytes = encode_q4_0(x);
        break;
      case 3:
        bytes = encode_q4_1(x);
        break;
      default:
        throw std::runtime_error("tiny_gguf_bytes: bad type");
    }
    std::vector<std::uint64_t> ne(shape.rbegin(), shape.rend());
    tensors.push_back({is_bias ? name : name + ".weight", ne, type, std::move(bytes)});
  }
  return build_gguf(meta, tensors);
}

inline void write_bytes(const std::filesystem::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

/// Writes `tw` as a Hugging Face folder (config.json, tokenizer.json,
/// model.safetensors in F32).
inline void write_tiny_hf(const TinyWeights& tw, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const auto& d = tw.d;
  nlohmann::json cfg = {{"model_type", d.qkv_bias ? "qwen2" : "llama"},
                        {"hidden_size", d.hidden},
                        {"intermediate_size", d.intermediate},
                        {"num_hidden_layers", d.layers},
                        {"num_attention_heads", d.heads},
                        {"num_key_value_heads", d.kv_heads},
                        {"vocab_size", tw.vocab},
                        {"rms_norm_eps", d.rms_eps},
                        {"rope_theta", d.rope_theta},
                        {"max_position_embeddings", 256},
                        {"tie_word_embeddings", d.tied},
                        {"bos_token_id", 261},
                        {"eos_token_id", 260}};
  std::ofstream(dir / "config.json") << cfg.dump(1);
  TinyVocab v;
  nlohmann::json vocab = nlohmann::json::object();
  for (int i = 0; i < 260; ++i) vocab[v.tokens[i]] = i;
  nlohmann::json tok = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", v.merges}}},
      {"added_tokens",
       {{{"id", 260}, {"content", "<|endoftext|>"}, {"special", true}},
        {{"id", 261}, {"content", "<|im_start|>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"post_processor", {{"type", "ByteLevel"}}},
  };
  std::ofstream(dir / "tokenizer.json") << tok.dump(1);
  static const std::map<std::string, std::string> hf = {
      {"attn_norm", "input_layernorm.weight"},    {"attn_q", "self_attn.q_proj.weight"},
      {"attn_k", "self_attn.k_proj.weight"},      {"attn_v", "self_attn.v_proj.weight"},
      {"attn_output", "self_attn.o_proj.weight"}, {"ffn_norm", "post_attention_layernorm.weight"},
      {"ffn_gate", "mlp.gate_proj.weight"},       {"ffn_up", "mlp.up_proj.weight"},
      {"ffn_down", "mlp.down_proj.weight"},       {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},   {"attn_v.bias", "self_attn.v_proj.bias"}};
  std::vector<io::SafetensorsWriteTensor> ts;
  for (const auto& [name, values] : tw.w) {
    std::string n;
    if (name == "token_embd")
      n = "model.embed_tokens.weight";
    else if (name == "output_norm")
      n = "model.norm.weight";
    else if (name == "output")
      n = "lm_head.weight";
    else {
      const auto dot = name.find('.', 4);
      n = "model.layers." + name.substr(4, dot - 4) + "." + hf.at(name.substr(dot + 1));
    }
    std::vector<std::int64_t> shape(tw.shape.at(name).begin(), tw.shape.at(name).end());
    ts.push_back({n, "F32", shape, encode_f32(values)});
  }
  write_bytes(dir / "model.safetensors", io::build_safetensors(ts, {{"format", "pt"}}));
}

}  // namespace kvscope::test
