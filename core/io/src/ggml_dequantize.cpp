// SPDX-License-Identifier: Apache-2.0
// Dequantization of ggml block types to float32. Each block layout is
// described where it is decoded; the arithmetic follows ggml's reference
// dequantizers (float32 products in the same order), so values agree with
// llama.cpp's and with the `gguf` package's numpy implementation.
#include <bit>
#include <cstring>
#include <limits>

#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/io/ggml_types.h"

namespace kvscope::io {
namespace {

constexpr int kQK = 256;  // values per K-quant super-block

// Non-linear 4-bit codebook of IQ4_NL and IQ4_XS.
constexpr std::int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

inline std::uint16_t load_u16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline std::uint32_t load_u32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float f16(const std::uint8_t* p) {
  return half_to_float(load_u16(p));
}
inline float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// Q8_0, 34 bytes: fp16 d, int8 q[32]; x = d * q.
void q8_0(const std::uint8_t* p, float* y) {
  const float d = f16(p);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<std::int8_t>(p[2 + j]));
}

// Q4_0, 18 bytes: fp16 d, 16 bytes of nibbles (low = values 0..15, high =
// 16..31); x = d * (q - 8).
void q4_0(const std::uint8_t* p, float* y) {
  const float d = f16(p);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((p[2 + j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((p[2 + j] >> 4) - 8);
  }
}

// Q4_1, 20 bytes: fp16 d, fp16 m, nibbles as Q4_0; x = d * q + m.
void q4_1(const std::uint8_t* p, float* y) {
  const float d = f16(p), m = f16(p + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(p[4 + j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(p[4 + j] >> 4) + m;
  }
}

// Q5_0, 22 bytes: fp16 d, u32 qh (bit j = 5th bit of value j), nibbles as
// Q4_0; x = d * (q - 16).
void q5_0(const std::uint8_t* p, float* y) {
  const float d = f16(p);
  const std::uint32_t qh = load_u32(p + 2);
  const std::uint8_t* qs = p + 6;
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = d * static_cast<float>(((qs[j] & 0x0F) | h0) - 16);
    y[j + 16] = d * static_cast<float>(((qs[j] >> 4) | h1) - 16);
  }
}

// Q5_1, 24 bytes: fp16 d, fp16 m, u32 qh, nibbles; x = d * q + m.
void q5_1(const std::uint8_t* p, float* y) {
  const float d = f16(p), m = f16(p + 2);
  const std::uint32_t qh = load_u32(p + 4);
  const std::uint8_t* qs = p + 8;
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = d * static_cast<float>((qs[j] & 0x0F) | h0) + m;
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) | h1) + m;
  }
}

// IQ4_NL, 18 bytes: fp16 d, nibbles as Q4_0 indexing the codebook.
void iq4_nl(const std::uint8_t* p, float* y) {
  const float d = f16(p);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4nlValues[p[2 + j] & 0x0F]);
    y[j + 16] = d * static_cast<float>(kIq4nlValues[p[2 + j] >> 4]);
  }
}

// Q2_K, 84 bytes: scales[16] (low nibble scale, high nibble min of each
// 16 values), qs[64] (2-bit values), fp16 d, fp16 dmin.
void q2_k(const std::uint8_t* p, float* y) {
  const std::uint8_t* scales = p;
  const std::uint8_t* q = p + 16;
  const float d = f16(p + 80), dmin = f16(p + 82);
  int is = 0;
  for (int n = 0; n < kQK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const std::uint8_t sc = scales[is++];
        const float dl = d * static_cast<float>(sc & 0x0F), ml = dmin * static_cast<float>(sc >> 4);
        const std::uint8_t* qq = q + 16 * half;
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((qq[l] >> shift) & 3) - ml;
      }
      shift += 2;
    }
    q += 32;
  }
}

// Q3_K, 110 bytes: hmask[32] (high bit, set = no offset), qs[64] (low 2
// bits), scales[12] (sixteen 6-bit scales, offset 32), fp16 d.
void q3_k(const std::uint8_t* p, float* y) {
  const std::uint8_t* hm = p;
  const std::uint8_t* q = p + 32;
  const float d_all = f16(p + 108);
  // Unpack the 6-bit scales: low 4 bits from bytes 0..7, high 2 bits from 8..11.
  std::uint32_t aux[4];
  std::memcpy(aux, p + 96, 12);
  constexpr std::uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu;
  const std::uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  std::int8_t scales[16];
  std::memcpy(scales, aux, 16);
  int is = 0;
  std::uint8_t m = 1;
  for (int n = 0; n < kQK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * static_cast<float>(scales[is++] - 32);
        const int o = 16 * half;
        for (int l = 0; l < 16; ++l) {
          const int v = ((q[l + o] >> shift) & 3) - ((hm[l + o] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
      shift += 2;
      m = static_cast<std::uint8_t>(m << 1);
    }
    q += 32;
  }
}

// The 6-bit scale and min of sub-block j (0..7) packed in 12 bytes (Q4_K, Q5_K).
inline void scale_min_k4(int j, const std::uint8_t* q, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K, 144 bytes: fp16 d, fp16 dmin, scales[12], qs[128]: eight
// sub-blocks of 32 with 6-bit scale and min; x = d*sc*q - dmin*m.
void q4_k(const std::uint8_t* p, float* y) {
  const float d = f16(p), dmin = f16(p + 2);
  const std::uint8_t* scales = p + 4;
  const std::uint8_t* q = p + 16;
  for (int j = 0, is = 0; j < kQK; j += 64, is += 2, q += 32) {
    int sc, mn;
    scale_min_k4(is, scales, sc, mn);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
    scale_min_k4(is + 1, scales, sc, mn);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
    for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
    y += 64;
  }
}

// Q5_K, 176 bytes: fp16 d, fp16 dmin, scales[12], qh[32] (5th bits), qs[128].
void q5_k(const std::uint8_t* p, float* y) {
  const float d = f16(p), dmin = f16(p + 2);
  const std::uint8_t* scales = p + 4;
  const std::uint8_t* qh = p + 16;
  const std::uint8_t* ql = p + 48;
  std::uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < kQK; j += 64, is += 2, ql += 32) {
    int sc, mn;
    scale_min_k4(is, scales, sc, mn);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
    scale_min_k4(is + 1, scales, sc, mn);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
    for (int l = 0; l < 32; ++l)
      y[l] = d1 * static_cast<float>((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      y[32 + l] = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    y += 64;
    u1 = static_cast<std::uint8_t>(u1 << 2);
    u2 = static_cast<std::uint8_t>(u2 << 2);
  }
}

// Q6_K, 210 bytes: ql[128] (low 4 bits), qh[64] (high 2 bits), int8
// scales[16] (one per 16 values), fp16 d; x = d * scale * (q - 32).
void q6_k(const std::uint8_t* p, float* y) {
  const std::uint8_t* ql = p;
  const std::uint8_t* qh = p + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(p + 192);
  const float d = f16(p + 208);
  for (int n = 0; n < kQK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// Q8_K, 292 bytes: float32 d, int8 q[256], int16 bsums[16] (sums for dot
// products, unused here); x = d * q.
void q8_k(const std::uint8_t* p, float* y) {
  float d;
  std::memcpy(&d, p, 4);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(static_cast<std::int8_t>(p[4 + j]));
}

// IQ4_XS, 136 bytes: fp16 d, u16 scales_h, scales_l[4], qs[128]: eight
// sub-blocks of 32 with a 6-bit scale (offset 32) over the IQ4_NL codebook.
void iq4_xs(const std::uint8_t* p, float* y) {
  const float d = f16(p);
  const std::uint16_t scales_h = load_u16(p + 2);
  const std::uint8_t* scales_l = p + 4;
  const std::uint8_t* qs = p + 8;
  for (int ib = 0; ib < kQK / 32; ++ib, qs += 16, y += 32) {
    const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((scales_h >> (2 * ib)) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * static_cast<float>(kIq4nlValues[qs[j] & 0x0F]);
      y[j + 16] = dl * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
    }
  }
}

using BlockFn = void (*)(const std::uint8_t*, float*);

BlockFn block_fn(std::uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::Q4_0:
      return q4_0;
    case GgmlType::Q4_1:
      return q4_1;
    case GgmlType::Q5_0:
      return q5_0;
    case GgmlType::Q5_1:
      return q5_1;
    case GgmlType::Q8_0:
      return q8_0;
    case GgmlType::Q2_K:
      return q2_k;
    case GgmlType::Q3_K:
      return q3_k;
    case GgmlType::Q4_K:
      return q4_k;
    case GgmlType::Q5_K:
      return q5_k;
    case GgmlType::Q6_K:
      return q6_k;
    case GgmlType::Q8_K:
      return q8_k;
    case GgmlType::IQ4_NL:
      return iq4_nl;
    case GgmlType::IQ4_XS:
      return iq4_xs;
    default:
      return nullptr;
  }
}

}  // namespace

GgmlBlock ggml_block(std::uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      return {1, 4};
    case GgmlType::F16:
    case GgmlType::BF16:
      return {1, 2};
    case GgmlType::Q4_0:
      return {32, 18};
    case GgmlType::Q4_1:
      return {32, 20};
    case GgmlType::Q5_0:
      return {32, 22};
    case GgmlType::Q5_1:
      return {32, 24};
    case GgmlType::Q8_0:
      return {32, 34};
    case GgmlType::Q8_1:
      return {32, 36};
    case GgmlType::Q2_K:
      return {256, 84};
    case GgmlType::Q3_K:
      return {256, 110};
    case GgmlType::Q4_K:
      return {256, 144};
    case GgmlType::Q5_K:
      return {256, 176};
    case GgmlType::Q6_K:
      return {256, 210};
    case GgmlType::Q8_K:
      return {256, 292};
    case GgmlType::IQ2_XXS:
      return {256, 66};
    case GgmlType::IQ2_XS:
      return {256, 74};
    case GgmlType::IQ3_XXS:
      return {256, 98};
    case GgmlType::IQ1_S:
      return {256, 50};
    case GgmlType::IQ4_NL:
      return {32, 18};
    case GgmlType::IQ3_S:
      return {256, 110};
    case GgmlType::IQ2_S:
      return {256, 82};
    case GgmlType::IQ4_XS:
      return {256, 136};
    case GgmlType::I8:
      return {1, 1};
    case GgmlType::I16:
      return {1, 2};
    case GgmlType::I32:
      return {1, 4};
    case GgmlType::I64:
    case GgmlType::F64:
      return {1, 8};
    case GgmlType::IQ1_M:
      return {256, 56};
    case GgmlType::TQ1_0:
      return {256, 54};
    case GgmlType::TQ2_0:
      return {256, 66};
  }
  return {};
}

std::string ggml_type_name(std::uint32_t type) {
  static constexpr const char* kNames[] = {
      "F32",     "F16",   "Q4_0",   "Q4_1",  "type 4",  "type 5",  "Q5_0",    "Q5_1",    "Q8_0",
      "Q8_1",    "Q2_K",  "Q3_K",   "Q4_K",  "Q5_K",    "Q6_K",    "Q8_K",    "IQ2_XXS", "IQ2_XS",
      "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",   "IQ4_XS",  "I8",      "I16",     "I32",
      "I64",     "F64",   "IQ1_M",  "BF16",  "type 31", "type 32", "type 33", "TQ1_0",   "TQ2_0"};
  if (type < std::size(kNames)) return kNames[type];
  return "type " + std::to_string(type);
}

bool ggml_type_supported(std::uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
      return true;
    default:
      return block_fn(type) != nullptr;
  }
}

const std::string& ggml_supported_types_text() {
  static const std::string text = [] {
    std::string s;
    for (auto t :
         {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
          GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
          GgmlType::Q6_K, GgmlType::Q8_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
      s += (s.empty() ? "" : ", ") + ggml_type_name(static_cast<std::uint32_t>(t));
    }
    return s;
  }();
  return text;
}

std::uint64_t ggml_nbytes(std::uint32_t type, std::uint64_t count) {
  const GgmlBlock b = ggml_block(type);
  if (b.values == 0 || count % b.values != 0) return 0;
  const std::uint64_t blocks = count / b.values;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / b.bytes) return 0;
  return blocks * b.bytes;
}

void ggml_dequantize(std::uint32_t type, std::span<const std::uint8_t> bytes, std::span<float> out) {
  if (!ggml_type_supported(type)) {
    throw Error(ErrorCode::Unsupported, "GGUF tensor type " + ggml_type_name(type) +
                                            " is not supported (supported: " + ggml_supported_types_text() +
                                            ")");
  }
  const std::uint64_t need = ggml_nbytes(type, out.size());
  if (need == 0 && !out.empty()) {
    throw Error(ErrorCode::Format, "GGUF tensor of " + std::to_string(out.size()) +
                                       " values is not a whole number of " + ggml_type_name(type) +
                                       " blocks");
  }
  if (need != bytes.size()) {
    throw Error(ErrorCode::Format, "GGUF tensor data is " + std::to_string(bytes.size()) +
                                       " bytes, expected " + std::to_string(need));
  }
  const std::uint8_t* p = bytes.data();
  float* o = out.data();
  const std::size_t n = out.size();
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      std::memcpy(o, p, n * 4);
      return;
    case GgmlType::F16:
      for (std::size_t i = 0; i < n; ++i) o[i] = half_to_float(load_u16(p + 2 * i));
      return;
    case GgmlType::BF16:
      for (std::size_t i = 0; i < n; ++i) o[i] = bf16_to_float(load_u16(p + 2 * i));
      return;
    default:
      break;
  }
  const BlockFn fn = block_fn(type);
  const GgmlBlock b = ggml_block(type);
  for (std::size_t i = 0; i < n / b.values; ++i, p += b.bytes, o += b.values) fn(p, o);
}

}  // namespace kvscope::io
