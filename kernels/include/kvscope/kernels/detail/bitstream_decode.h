// SPDX-License-Identifier: Apache-2.0
#pragma once

// Per-stream decoding of core/codec's bitstream (codecs cachegen, int8, int4,
// fp16), written once for the host and the device. These mirror
// core/codec/src/entropy.h (RangeDecoder, DecodeTable::find) and the chunk
// decoders of codec_cachegen.cpp and codec_int.cpp step for step; the
// host-side test runs them against kvscope::codec::decode() so CI checks
// bit-exactness without a GPU.
//
// Output is fp16 (what a GPU cache holds): the CPU codec's float value
// float(q) * step rounded to nearest even, so GPU output ==
// round_to_half(CPU output) exactly.

#include <cmath>
#include <cstdint>

#include "kvscope/codec/cachegen_prediction.h"
#include "kvscope/kernels/detail/fp16_hd.h"
#include "kvscope/kernels/detail/hd.h"

namespace kvscope::kernels::detail {

/// Device-side error bits.
enum CodecFlag : std::uint32_t {
  kCodecBadSymbol = 1u,  ///< a delta put the value outside [-M, M] (the CPU's "corrupt stream")
  kCodecBadModel = 2u,   ///< a symbol model index out of range (host validation should prevent it)
  kCodecBadEnd = 4u,     ///< a stream does not end exactly as the encoder ends one (docs/bitstream.md 2)
};

/// The host's error message for a non-zero set of CodecFlag bits.
inline const char* codec_flags_error(std::uint32_t flags) {
  if ((flags & kCodecBadEnd) != 0 && (flags & (kCodecBadSymbol | kCodecBadModel)) == 0)
    return "gpu decode: a stream does not end as the encoder ends it (corrupt stream)";
  return "gpu decode: decoded value out of range (corrupt stream)";
}

/// A 16-bit CDF of `n` symbols: n + 1 uint32 entries, cdf[0] = 0,
/// cdf[n] = 65536, non-decreasing (zero-frequency symbols allowed). n = 0
/// is the empty model.
struct CdfRef {
  const std::uint32_t* cdf;
  int n;
};

/// The symbol s with cdf[s] <= v < cdf[s+1] (v < 65536): the largest s with
/// cdf[s] <= v, which always has non-zero frequency. Same answer as the
/// CPU's bucket search (the intervals of non-empty symbols partition [0, 65536)).
KVSCOPE_HD int find_symbol(const std::uint32_t* cdf, int n, std::uint32_t v) {
  int lo = 0, hi = n;  // cdf[lo] <= v < cdf[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (cdf[mid] <= v) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/// core/codec's range decoder: reads 4 bytes to start, zeros past the end
/// (the encoder trims trailing zero bytes), clamps v like the CPU does.
/// `read` counts the bytes read, past the end included, for ends_exactly().
struct CodecRangeDecoder {
  const std::uint8_t* begin;
  std::uint32_t length;
  std::uint64_t read;
  std::uint32_t code;
  std::uint32_t range;

  KVSCOPE_HD void init(const std::uint8_t* bytes, std::uint32_t size) {
    begin = bytes;
    length = size;
    read = 0;
    code = 0;
    range = 0xffffffffu;
    for (int i = 0; i < 4; ++i) code = (code << 8) | next();
  }
  KVSCOPE_HD std::uint32_t byte_at(std::uint64_t i) const {
    return i < length ? static_cast<std::uint32_t>(begin[i]) : 0u;
  }
  KVSCOPE_HD std::uint32_t next() { return byte_at(read++); }
  /// After the last symbol: whether the stream ends exactly as the encoder
  /// ends one (core/codec's range_stream_end_error(), docs/bitstream.md
  /// section 2): every byte read, no trailing 0 byte, and the final code is
  /// the offset the encoder's finish() picks in the last interval.
  KVSCOPE_HD bool ends_exactly() const {
    if (read < length) return false;
    if (length > 0 && begin[length - 1] == 0) return false;
    std::uint32_t window = 0;
    for (std::uint64_t i = read - 4; i < read; ++i) window = (window << 8) | byte_at(i);
    const std::uint32_t low = window - code;
    for (int k = 32; k >= 0; k -= 8) {
      const std::uint64_t unit = 1ull << k;
      const std::uint64_t offset = (unit - static_cast<std::uint64_t>(low) % unit) % unit;
      if (offset <= static_cast<std::uint64_t>(range) - 1) return offset == code;
    }
    return false;
  }
  KVSCOPE_HD int decode(const CdfRef& m) {
    const std::uint32_t r = range >> 16;
    std::uint32_t v = code / r;
    if (v >= 65536u) v = 65535u;
    const int s = find_symbol(m.cdf, m.n, v);
    code -= r * m.cdf[s];
    range = r * (m.cdf[s + 1] - m.cdf[s]);
    while (range < (1u << 24)) {
      range <<= 8;
      code = (code << 8) | next();
    }
    return s;
  }
};

/// What one cachegen quantization step covers (core/codec's Layout::Scale,
/// docs/bitstream.md "cachegen"): one token over all channels of the layer,
/// one token in one KV head, or one channel over the chunk (layout version 1).
enum class CachegenScale : std::uint8_t { Token = 0, Head = 1, Channel = 2 };

/// core/codec's anchor prediction, the same definition on host and device.
KVSCOPE_HD float cachegen_anchor_ratio(float step_anchor, float step_token) {
  return ::kvscope::codec::detail::anchor_ratio(step_anchor, step_token);
}
KVSCOPE_HD int cachegen_predict(int q_anchor, float ratio, int M) {
  return ::kvscope::codec::detail::predict_from_anchor(q_anchor, ratio, M);
}

/// Little-endian fp16 bits at p (steps lie unaligned in the chunk payload).
KVSCOPE_HD std::uint16_t load_half_le(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

/// One cachegen stream: `tokens` values of one channel in one chunk. Token
/// t's step is the fp16 at steps + 2 * t * step_stride (step_stride 0: one
/// step for the whole stream, scale=channel). Anchors (every group_size-th
/// token from the chunk start) are Q = symbol - M; the others
/// Q = P + symbol - 2M, with P the anchor's Q re-expressed in the token's
/// step (cachegen_predict), which must lie in [-M, M]. The value is
/// fp16(float(Q) * step). Writes out[t * stride]; returns CodecFlag bits.
/// The caller guarantees non-empty models where used (anchor always; delta
/// when tokens > 1 and group_size > 1) and finite, non-negative steps, as
/// the CPU decoder checks before decoding.
KVSCOPE_HD std::uint32_t decode_cachegen_stream(const std::uint8_t* bytes, std::uint32_t length,
                                                std::uint32_t tokens, std::uint32_t group_size, int M,
                                                const std::uint8_t* steps, std::uint32_t step_stride,
                                                const CdfRef& anchor_model, const CdfRef& delta_model,
                                                std::uint16_t* out, std::uint32_t stride) {
  CodecRangeDecoder rd;
  rd.init(bytes, length);
  const std::uint64_t step_bytes = 2ull * step_stride;
  float step = half_to_float(load_half_le(steps));
  std::uint32_t flags = 0;
  int anchor_q = 0;
  float anchor_step = 0.0f;
  std::uint32_t g = 0;
  for (std::uint32_t t = 0; t < tokens; ++t) {
    if (step_stride != 0 && t != 0) step = half_to_float(load_half_le(steps + t * step_bytes));
    int q;
    if (g == 0) {
      q = rd.decode(anchor_model) - M;
      anchor_q = q;
      anchor_step = step;
    } else {
      q = cachegen_predict(anchor_q, cachegen_anchor_ratio(anchor_step, step), M) + rd.decode(delta_model) -
          2 * M;
      if (q < -M || q > M) {
        flags |= kCodecBadSymbol;
        q = q < -M ? -M : M;  // keep going in bounds; the call reports an error anyway
      }
    }
    out[static_cast<std::uint64_t>(t) * stride] = float_to_half(static_cast<float>(q) * step);
    if (++g == group_size) g = 0;
  }
  if (!rd.ends_exactly()) flags |= kCodecBadEnd;
  return flags;
}

/// int8/int4 symbol `i` of a chunk's symbol area (int4: q + 8 in nibbles, low first).
KVSCOPE_HD int int_symbol(const std::uint8_t* sym, std::uint64_t i, int bits) {
  if (bits == 8) return static_cast<int>(static_cast<std::int8_t>(sym[i]));
  return static_cast<int>((sym[i >> 1] >> ((i & 1) * 4)) & 0xfu) - 8;
}

enum class SectionCodec : int { Int8 = 0, Int4 = 1, Fp16 = 2 };

/// Element k (in payload order [head][token][dim]) of an int8/int4/fp16 chunk
/// section of `tokens` tokens; `out` points at (head 0, token_begin, dim 0)
/// of the (layer, kind) tensor with `T` tokens. Returns CodecFlag bits.
KVSCOPE_HD std::uint32_t decode_section_element(const std::uint8_t* payload, std::uint32_t tokens,
                                                SectionCodec codec, std::uint64_t k, std::uint32_t T,
                                                std::uint32_t D, std::uint16_t* out) {
  const std::uint64_t nd = static_cast<std::uint64_t>(tokens) * D;
  const std::uint64_t h = k / nd;
  const std::uint64_t rem = k - h * nd;
  const std::uint64_t t = rem / D;
  const std::uint64_t d = rem - t * D;
  std::uint16_t* dst = out + (h * T + t) * D + d;
  if (codec == SectionCodec::Fp16) {
    const std::uint16_t bits = static_cast<std::uint16_t>(payload[2 * k] | (payload[2 * k + 1] << 8));
    *dst = float_to_half(half_to_float(bits));  // what round_to_half(CPU value) gives, NaNs included
    return 0;
  }
  const float step = half_to_float(static_cast<std::uint16_t>(payload[2 * t] | (payload[2 * t + 1] << 8)));
  const int bits = codec == SectionCodec::Int8 ? 8 : 4;
  const int M = bits == 8 ? 127 : 7;
  int q = int_symbol(payload + 2 * static_cast<std::uint64_t>(tokens), k, bits);
  std::uint32_t flags = 0;
  if (q < -M || q > M) {
    flags = kCodecBadSymbol;
    q = 0;
  }
  *dst = float_to_half(static_cast<float>(q) * step);
  return flags;
}

}  // namespace kvscope::kernels::detail
