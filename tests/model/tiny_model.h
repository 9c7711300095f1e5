// SPDX-License-Identifier: Apache-2.0
#pragma once

// Test helpers: write GGUF images and tiny random Llama models (GGUF and
// Hugging Face folders) so the model tests need no downloaded file.

#include <algorithm>
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

// ---- a tiny random model ------------------------------------------------

/// Dimensions and architecture of a tiny test model. `arch` empty means the
/// legacy choice: "qwen2" with qkv_bias, else "llama".
struct TinyDims {
  int layers = 2, hidden = 64, heads = 4, kv_heads = 2, head_dim = 16, intermediate = 96;
  double rope_theta = 10000.0, rms_eps = 1e-5;
  bool tied = true;
  bool qkv_bias = false;  // Qwen2 style (written as architecture qwen2)
  std::string arch;
  // Architecture extras (see ModelConfig): Gemma soft-capping and query scale,
  // sliding window, Gemma 3 local RoPE base and global linear scaling, Phi-3
  // LongRoPE (context lengths; short factors are generated weights).
  double attn_softcap = 0.0, final_softcap = 0.0, query_pre_attn_scalar = 0.0;
  int sliding_window = 0;
  double rope_local_theta = 0.0, rope_linear_factor = 0.0;
  int context_length = 256, original_context = 0;

  std::string architecture() const { return !arch.empty() ? arch : qkv_bias ? "qwen2" : "llama"; }
  bool gemma() const { return architecture() == "gemma2" || architecture() == "gemma3"; }
  bool qk_norm() const { return architecture() == "qwen3" || architecture() == "gemma3"; }
  bool longrope() const { return architecture() == "phi3" && original_context > 0; }
};

/// A portable pseudo-random value in [-0.5, 0.5): splitmix64 of (FNV-1a of
/// `name`) + i, top 24 bits. make_arch_golden.py computes the same numbers,
/// so its reference forward runs on exactly the weights the tests write.
inline float portable_uniform(const std::string& name, std::uint64_t i) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  std::uint64_t z = h + i + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f) - 0.5f;
}

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

/// Weights in Hugging Face layout ([out, in], Q/K rows in rotate_half order),
/// norms as the factor applied (Gemma's HF files store factor - 1).
/// `portable`: values from portable_uniform (matrices 0.7 * u, norms
/// 1 + 0.2 * u, Phi-3 RoPE factors 1 + 4 * (u + 0.5)), else a normal(0, 0.2)
/// from std::mt19937.
struct TinyWeights {
  TinyDims d;
  int vocab = 262;
  std::map<std::string, std::vector<float>> w;              // canonical names
  std::map<std::string, std::vector<std::uint64_t>> shape;  // row-major

  explicit TinyWeights(const TinyDims& dims, unsigned seed = 7, bool portable = false) : d(dims) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 0.2f);
    enum Kind { Matrix, Norm, RopeFactor };
    auto add = [&](const std::string& n, std::vector<std::uint64_t> s, Kind kind) {
      std::size_t count = 1;
      for (auto x : s) count *= x;
      std::vector<float> v(count);
      for (std::size_t i = 0; i < count; ++i) {
        if (portable) {
          const float u = portable_uniform(n, i);
          v[i] = kind == Norm ? 1.f + 0.2f * u : kind == RopeFactor ? 1.f + 4.f * (u + 0.5f) : 0.7f * u;
        } else {
          v[i] = kind == Norm ? 1.f + 0.1f * nd(rng) : nd(rng);
        }
      }
      w[n] = std::move(v);
      shape[n] = std::move(s);
    };
    const std::uint64_t H = d.hidden, Q = d.heads * d.head_dim, K = d.kv_heads * d.head_dim,
                        I = d.intermediate, hd = d.head_dim;
    add("token_embd", {static_cast<std::uint64_t>(vocab), H}, Matrix);
    add("output_norm", {H}, Norm);
    if (!d.tied) add("output", {static_cast<std::uint64_t>(vocab), H}, Matrix);
    if (d.longrope()) add("rope_factors_short", {hd / 2}, RopeFactor);
    for (int l = 0; l < d.layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      add(p + "attn_norm", {H}, Norm);
      add(p + "attn_q", {Q, H}, Matrix);
      add(p + "attn_k", {K, H}, Matrix);
      add(p + "attn_v", {K, H}, Matrix);
      if (d.qkv_bias) {
        add(p + "attn_q.bias", {Q}, Matrix);
        add(p + "attn_k.bias", {K}, Matrix);
        add(p + "attn_v.bias", {K}, Matrix);
      }
      if (d.qk_norm()) {
        add(p + "attn_q_norm", {hd}, Norm);
        add(p + "attn_k_norm", {hd}, Norm);
      }
      add(p + "attn_output", {H, Q}, Matrix);
      if (d.gemma()) add(p + "post_attention_norm", {H}, Norm);
      add(p + "ffn_norm", {H}, Norm);
      add(p + "ffn_gate", {I, H}, Matrix);
      add(p + "ffn_up", {I, H}, Matrix);
      add(p + "ffn_down", {H, I}, Matrix);
      if (d.gemma()) add(p + "post_ffw_norm", {H}, Norm);
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
// Simple, valid K-quant encoders (not ggml's optimised search): per
// sub-block min/max or absmax scales, quantized to 6/8 bits under fp16 super
// scales. Enough to write Q4_K_M-style test files; the dequantizers are
// checked against independent golden data separately.
inline std::vector<std::uint8_t> encode_q4_k(const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (std::size_t b = 0; b < x.size(); b += 256) {
    float scale[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      float mn = 0, mx = 0;
      for (int l = 0; l < 32; ++l) {
        mn = std::min(mn, x[b + 32 * j + l]);
        mx = std::max(mx, x[b + 32 * j + l]);
      }
      scale[j] = (mx - mn) / 15.f;
      mins[j] = -mn;
      max_scale = std::max(max_scale, scale[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float d = half_to_float(float_to_half(max_scale / 63.f)),
                dmin = half_to_float(float_to_half(max_min / 63.f));
    put_half(out, d);
    put_half(out, dmin);
    int sc[8], mq[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = d > 0 ? std::clamp(static_cast<int>(std::lround(scale[j] / d)), 0, 63) : 0;
      mq[j] = dmin > 0 ? std::clamp(static_cast<int>(std::lround(mins[j] / dmin)), 0, 63) : 0;
    }
    std::uint8_t packed[12] = {};
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        packed[j] |= static_cast<std::uint8_t>(sc[j] & 63);
        packed[j + 4] |= static_cast<std::uint8_t>(mq[j] & 63);
      } else {
        packed[j + 4] = static_cast<std::uint8_t>((sc[j] & 0xF) | ((mq[j] & 0xF) << 4));
        packed[j - 4] |= static_cast<std::uint8_t>((sc[j] >> 4) << 6);
        packed[j] |= static_cast<std::uint8_t>((mq[j] >> 4) << 6);
      }
    }
    out.insert(out.end(), packed, packed + 12);
    int q[256];
    for (int j = 0; j < 8; ++j) {
      const float s = d * static_cast<float>(sc[j]), m = dmin * static_cast<float>(mq[j]);
      for (int l = 0; l < 32; ++l)
        q[32 * j + l] =
            s > 0 ? std::clamp(static_cast<int>(std::lround((x[b + 32 * j + l] + m) / s)), 0, 15) : 0;
    }
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l)
        out.push_back(static_cast<std::uint8_t>(q[64 * k + l] | (q[64 * k + 32 + l] << 4)));
  }
  return out;
}

inline std::vector<std::uint8_t> encode_q6_k(const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (std::size_t b = 0; b < x.size(); b += 256) {
    float scale[16], max_scale = 0;
    for (int j = 0; j < 16; ++j) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[b + 16 * j + l]));
      scale[j] = amax / 31.f;
      max_scale = std::max(max_scale, scale[j]);
    }
    const float d = half_to_float(float_to_half(max_scale / 127.f));
    int sc[16], q[256];
    for (int j = 0; j < 16; ++j) {
      sc[j] = d > 0 ? std::clamp(static_cast<int>(std::lround(scale[j] / d)), 0, 127) : 0;
      const float s = d * static_cast<float>(sc[j]);
      for (int l = 0; l < 16; ++l)
        q[16 * j + l] =
            (s > 0 ? std::clamp(static_cast<int>(std::lround(x[b + 16 * j + l] / s)), -32, 31) : 0) + 32;
    }
    std::uint8_t ql[128], qh[64];
    for (int n = 0; n < 256; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int q1 = q[n + l], q2 = q[n + l + 32], q3 = q[n + l + 64], q4 = q[n + l + 96];
        ql[n / 2 + l] = static_cast<std::uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
        ql[n / 2 + l + 32] = static_cast<std::uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
        qh[n / 4 + l] =
            static_cast<std::uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
    }
    out.insert(out.end(), ql, ql + 128);
    out.insert(out.end(), qh, qh + 64);
    for (int j = 0; j < 16; ++j) out.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(sc[j])));
    put_half(out, d);
  }
  return out;
}

inline std::vector<std::uint8_t> encode_tensor(const std::vector<float>& x, std::uint32_t type) {
  switch (type) {
    case 0:
      return encode_f32(x);
    case 1:
      return encode_f16(x);
    case 30:
      return encode_bf16(x);
    case 8:
      return encode_q8_0(x);
    case 2:
      return encode_q4_0(x);
    case 3:
      return encode_q4_1(x);
    case 12:
      return encode_q4_k(x);
    case 14:
      return encode_q6_k(x);
    default:
      throw std::runtime_error("encode_tensor: no test encoder for this type");
  }
}

/// Rows of `a` then rows of `b` (fused matrices).
inline std::vector<float> stack_rows(std::vector<float> a, const std::vector<float>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// Writes `tw` as a GGUF model in llama.cpp's layout for its architecture
/// (Q/K rows permuted for llama, Phi-3's fused attn_qkv and gate|up ffn_up);
/// 2-D weights stored as `matrix_type` (0 F32, 1 F16, 30 BF16, 8 Q8_0, 2
/// Q4_0, 3 Q4_1, 12 Q4_K, 14 Q6_K); `down_type` (if set) for ffn_down and
/// attn_v as Q4_K_M files do. Returns the file bytes.
inline std::vector<std::uint8_t> tiny_gguf_bytes(const TinyWeights& tw, std::uint32_t matrix_type = 0,
                                                 std::int64_t down_type = -1) {
  const auto& d = tw.d;
  const std::string arch = d.architecture();
  TinyVocab v;
  std::vector<GgufMeta> meta = {
      {"general.architecture", 8, arch},
      {"general.name", 8, std::string("tiny")},
      {arch + ".block_count", 4, std::uint64_t(d.layers)},
      {arch + ".context_length", 4, std::uint64_t(d.context_length)},
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
  if (d.head_dim * d.heads != d.hidden)
    meta.push_back({arch + ".attention.key_length", 4, std::uint64_t(d.head_dim)});
  if (d.sliding_window > 0)
    meta.push_back({arch + ".attention.sliding_window", 4, std::uint64_t(d.sliding_window)});
  if (d.attn_softcap > 0) meta.push_back({arch + ".attn_logit_softcapping", 6, d.attn_softcap});
  if (d.final_softcap > 0) meta.push_back({arch + ".final_logit_softcapping", 6, d.final_softcap});
  if (d.rope_linear_factor > 0) {
    meta.push_back({arch + ".rope.scaling.type", 8, std::string("linear")});
    meta.push_back({arch + ".rope.scaling.factor", 6, d.rope_linear_factor});
  }
  if (d.longrope()) {
    meta.push_back({arch + ".rope.scaling.original_context_length", 4, std::uint64_t(d.original_context)});
  }
  // Canonical -> stored tensors (fusing Phi-3's).
  std::vector<std::pair<std::string, std::vector<float>>> stored;
  std::map<std::string, std::vector<std::uint64_t>> shapes;
  const bool phi3 = arch == "phi3";
  for (const auto& [name, values] : tw.w) {
    auto shape = tw.shape.at(name);
    if (phi3 && (name.ends_with("attn_k") || name.ends_with("attn_v") || name.ends_with("ffn_gate")))
      continue;
    std::string out_name = name;
    std::vector<float> x = values;
    if (phi3 && name.ends_with("attn_q")) {
      const std::string p = name.substr(0, name.size() - 6);
      x = stack_rows(stack_rows(x, tw.w.at(p + "attn_k")), tw.w.at(p + "attn_v"));
      out_name = p + "attn_qkv";
      shape[0] += 2 * tw.shape.at(p + "attn_k")[0];
    } else if (phi3 && name.ends_with("ffn_up")) {
      const std::string p = name.substr(0, name.size() - 6);
      x = stack_rows(tw.w.at(p + "ffn_gate"), x);
      shape[0] *= 2;
    }
    if (arch == "llama" && (name.ends_with("attn_q") || name.ends_with("attn_k"))) {
      const int heads = name.ends_with("attn_q") ? d.heads : d.kv_heads;
      x = permute_rows(x, heads, d.head_dim, shape[1]);  // llama.cpp permutes Q/K only for llama
    }
    shapes[out_name] = shape;
    stored.emplace_back(out_name, std::move(x));
  }
  std::vector<GgufTensorIn> tensors;
  for (auto& [name, x] : stored) {
    const auto& shape = shapes.at(name);
    const bool is_bias = name.find(".bias") != std::string::npos;
    std::uint32_t type = shape.size() == 2 ? matrix_type : 0;
    if (down_type >= 0 && (name.ends_with("ffn_down") || name.ends_with("attn_v")))
      type = static_cast<std::uint32_t>(down_type);
    std::vector<std::uint64_t> ne(shape.rbegin(), shape.rend());
    tensors.push_back({is_bias ? name : name + ".weight", ne, type, encode_tensor(x, type)});
  }
  return build_gguf(meta, tensors);
}

/// Changes the stored type number of tensor `name` in a GGUF image (its info
/// record: name, n_dims, dims, type, offset); returns the old type. The data
/// stays as it is, so a type with smaller blocks still fits the file.
inline std::uint32_t retype_tensor(std::vector<std::uint8_t>& gguf, const std::string& name, int n_dims,
                                   std::uint32_t new_type) {
  const auto it = std::search(gguf.begin(), gguf.end(), name.begin(), name.end());
  if (it == gguf.end()) throw std::runtime_error("retype_tensor: no tensor " + name);
  const std::size_t at = static_cast<std::size_t>(it - gguf.begin()) + name.size() + 4 + 8 * n_dims;
  std::uint32_t old = 0;
  std::memcpy(&old, &gguf[at], 4);
  std::memcpy(&gguf[at], &new_type, 4);
  return old;
}

inline void write_bytes(const std::filesystem::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

/// Writes `tw` as a Hugging Face folder (config.json, tokenizer.json,
/// model.safetensors in F32) in transformers' layout for its architecture
/// (Gemma norms as factor - 1, Phi-3's fused qkv_proj and gate_up_proj).
inline void write_tiny_hf(const TinyWeights& tw, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const auto& d = tw.d;
  const std::string arch = d.architecture();
  nlohmann::json cfg = {{"model_type", arch == "gemma3" ? "gemma3_text" : arch},
                        {"hidden_size", d.hidden},
                        {"intermediate_size", d.intermediate},
                        {"num_hidden_layers", d.layers},
                        {"num_attention_heads", d.heads},
                        {"num_key_value_heads", d.kv_heads},
                        {"head_dim", d.head_dim},
                        {"vocab_size", tw.vocab},
                        {"rms_norm_eps", d.rms_eps},
                        {"rope_theta", d.rope_theta},
                        {"max_position_embeddings", d.context_length},
                        {"tie_word_embeddings", d.tied},
                        {"bos_token_id", 261},
                        {"eos_token_id", 260}};
  if (d.gemma()) {
    cfg["hidden_activation"] = "gelu_pytorch_tanh";
    cfg["query_pre_attn_scalar"] = d.query_pre_attn_scalar > 0 ? d.query_pre_attn_scalar : d.head_dim;
    cfg["attn_logit_softcapping"] = d.attn_softcap > 0 ? nlohmann::json(d.attn_softcap) : nlohmann::json();
    cfg["final_logit_softcapping"] = d.final_softcap > 0 ? nlohmann::json(d.final_softcap) : nlohmann::json();
  }
  if (d.sliding_window > 0) cfg["sliding_window"] = d.sliding_window;
  if (arch == "gemma3") {
    cfg["rope_local_base_freq"] = d.rope_local_theta;
    cfg["sliding_window_pattern"] = 6;
  }
  if (d.rope_linear_factor > 0)
    cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", d.rope_linear_factor}};
  if (d.longrope()) {
    const auto& f = tw.w.at("rope_factors_short");
    cfg["original_max_position_embeddings"] = d.original_context;
    cfg["rope_scaling"] = {{"type", "longrope"},
                           {"short_factor", std::vector<double>(f.begin(), f.end())},
                           {"long_factor", std::vector<double>(f.size(), 1.0)}};
  }
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
  std::map<std::string, std::string> hf = {
      {"attn_norm", "input_layernorm.weight"},    {"attn_q", "self_attn.q_proj.weight"},
      {"attn_k", "self_attn.k_proj.weight"},      {"attn_v", "self_attn.v_proj.weight"},
      {"attn_output", "self_attn.o_proj.weight"}, {"ffn_norm", "post_attention_layernorm.weight"},
      {"ffn_gate", "mlp.gate_proj.weight"},       {"ffn_up", "mlp.up_proj.weight"},
      {"ffn_down", "mlp.down_proj.weight"},       {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},   {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_q_norm", "self_attn.q_norm.weight"}, {"attn_k_norm", "self_attn.k_norm.weight"}};
  if (d.gemma()) {
    hf["post_attention_norm"] = "post_attention_layernorm.weight";
    hf["ffn_norm"] = "pre_feedforward_layernorm.weight";
    hf["post_ffw_norm"] = "post_feedforward_layernorm.weight";
  }
  const bool phi3 = arch == "phi3";
  std::vector<io::SafetensorsWriteTensor> ts;
  for (const auto& [name, values] : tw.w) {
    if (name == "rope_factors_short") continue;  // in config.json
    if (phi3 && (name.ends_with("attn_k") || name.ends_with("attn_v") || name.ends_with("ffn_gate")))
      continue;
    std::string n;
    std::vector<float> x = values;
    auto shape64 = tw.shape.at(name);
    if (name == "token_embd") {
      n = "model.embed_tokens.weight";
    } else if (name == "output_norm") {
      n = "model.norm.weight";
    } else if (name == "output") {
      n = "lm_head.weight";
    } else {
      const auto dot = name.find('.', 4);
      const std::string layer = "model.layers." + name.substr(4, dot - 4) + ".";
      const std::string rest = name.substr(dot + 1), p = name.substr(0, dot + 1);
      if (phi3 && rest == "attn_q") {
        x = stack_rows(stack_rows(x, tw.w.at(p + "attn_k")), tw.w.at(p + "attn_v"));
        shape64[0] += 2 * tw.shape.at(p + "attn_k")[0];
        n = layer + "self_attn.qkv_proj.weight";
      } else if (phi3 && rest == "ffn_up") {
        x = stack_rows(tw.w.at(p + "ffn_gate"), x);
        shape64[0] *= 2;
        n = layer + "mlp.gate_up_proj.weight";
      } else {
        n = layer + hf.at(rest);
      }
    }
    if (d.gemma() && name.ends_with("norm")) {
      for (auto& f : x) f -= 1.f;  // Gemma's RMSNorm multiplies by (1 + w)
    }
    std::vector<std::int64_t> shape(shape64.begin(), shape64.end());
    ts.push_back({n, "F32", shape, encode_f32(x)});
  }
  write_bytes(dir / "model.safetensors", io::build_safetensors(ts, {{"format", "pt"}}));
}

}  // namespace kvscope::test
