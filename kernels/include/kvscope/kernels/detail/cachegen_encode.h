#pragma once

// core/codec's cachegen encoder (codec_cachegen.cpp, entropy.cpp) as
// host/device functions: per-channel quantization of a chunk, symbol
// mapping, frequency normalisation and the range encoder with its
// trimming flush. The GPU encoder and its CPU emulation run these; the host
// test compares the emulation's section payloads with codec::encode's.

#include <cmath>
#include <cstdint>

#include "kvscope/kernels/detail/fp16_hd.h"
#include "kvscope/kernels/detail/hd.h"

namespace kvscope::kernels::detail {

/// half_scale_up: smallest fp16 >= value; 0xffff when value is negative,
/// NaN, infinite or beyond fp16 (the codec throws there).
KVSCOPE_HD std::uint16_t half_up(float value) {
  if (!(value >= 0.0f) || !(value <= 3.4e38f)) return 0xffffu;
  std::uint16_t h = float_to_half(value);
  if (half_to_float(h) < value) ++h;
  return h >= 0x7c00u ? 0xffffu : h;
}

/// Step of one channel of a chunk: fp16-up(absmax / M); 0xffff if invalid
/// (NaN/inf values, as the codec rejects them).
KVSCOPE_HD std::uint16_t cachegen_step(const float* in, std::uint32_t stride, std::uint32_t tokens, int M) {
  float amax = 0.0f;
  for (std::uint32_t t = 0; t < tokens; ++t) {
    const float a = fabsf(in[static_cast<std::uint64_t>(t) * stride]);
    if (!(a <= 3.4e38f)) return 0xffffu;  // NaN or infinite
    amax = a > amax ? a : amax;
  }
  return half_up(amax / static_cast<float>(M));
}

/// Symbol of token t: anchors (t % group == 0) Q + M, others Q - Q_anchor + 2M,
/// with Q = clamp(rint(x / step), -M, M). `anchor_q` carries the group's anchor.
KVSCOPE_HD int cachegen_symbol(float x, float step, int M, bool anchor, int& anchor_q) {
  int q = 0;
  if (step > 0.0f) {
    const float r = rintf(x / step);
    q = r > static_cast<float>(M) ? M : r < -static_cast<float>(M) ? -M : static_cast<int>(r);
  }
  if (anchor) {
    anchor_q = q;
    return q + M;
  }
  return q - anchor_q + 2 * M;
}

/// FreqModel::from_counts (floor_all = false): frequencies of `n` symbols
/// summing to 65536, counted symbols >= 1, uncounted 0; remainder to the
/// first most frequent. Writes freq[0..n); returns false for an empty model
/// (no counts) and sets `bad` if normalisation fails (codec: Internal error).
KVSCOPE_HD bool normalise_counts(const std::uint32_t* counts, int n, std::uint32_t* freq, bool& bad) {
  std::uint64_t total = 0;
  int nonzero = 0;
  for (int i = 0; i < n; ++i) {
    total += counts[i];
    nonzero += counts[i] > 0 ? 1 : 0;
  }
  if (n == 0 || total == 0) return false;
  const double scale = static_cast<double>(65536 - nonzero) / static_cast<double>(total);
  std::int64_t sum = 0;
  int top = 0;
  for (int i = 0; i < n; ++i) {
    freq[i] = counts[i] ? 1u + static_cast<std::uint32_t>(static_cast<double>(counts[i]) * scale) : 0u;
    sum += freq[i];
    if (freq[i] > freq[top]) top = i;
  }
  const std::int64_t diff = 65536 - sum;
  if (diff < 0 && static_cast<std::int64_t>(freq[top]) + diff < 1) bad = true;
  freq[top] = static_cast<std::uint32_t>(static_cast<std::int64_t>(freq[top]) + diff);
  return true;
}

/// core/codec's RangeEncoder into [out, out + capacity), including its
/// finish(): the value with the most trailing zero bytes, first byte
/// dropped, trailing zero bytes trimmed. `overflow` when capacity is short.
struct CodecRangeEncoder {
  std::uint8_t* out;
  std::uint32_t capacity;
  std::uint32_t size;
  bool overflow;
  bool first;
  std::uint64_t low;
  std::uint32_t range;
  std::uint8_t cache;
  std::uint64_t cache_size;

  KVSCOPE_HD void init(std::uint8_t* buffer, std::uint32_t cap) {
    out = buffer;
    capacity = cap;
    size = 0;
    overflow = false;
    first = true;
    low = 0;
    range = 0xffffffffu;
    cache = 0;
    cache_size = 1;
  }
  KVSCOPE_HD void put(std::uint8_t b) {
    if (first) {  // always 0: the codec erases it
      first = false;
      return;
    }
    if (size < capacity) {
      out[size++] = b;
    } else {
      overflow = true;
    }
  }
  KVSCOPE_HD void shift_low() {
    if (static_cast<std::uint32_t>(low) < 0xff000000u || (low >> 32) != 0) {
      const std::uint8_t carry = static_cast<std::uint8_t>(low >> 32);
      std::uint8_t temp = cache;
      do {
        put(static_cast<std::uint8_t>(temp + carry));
        temp = 0xff;
      } while (--cache_size != 0);
      cache = static_cast<std::uint8_t>(low >> 24);
    }
    ++cache_size;
    low = (low & 0x00ffffffu) << 8;
  }
  KVSCOPE_HD void encode(std::uint32_t cum, std::uint32_t freq) {
    const std::uint32_t r = range >> 16;
    low += static_cast<std::uint64_t>(r) * cum;
    range = r * freq;
    while (range < (1u << 24)) {
      range <<= 8;
      shift_low();
    }
  }
  KVSCOPE_HD void finish() {
    const std::uint64_t hi = low + range - 1;
    for (int k = 32; k >= 0; k -= 8) {
      const std::uint64_t mask = (static_cast<std::uint64_t>(1) << k) - 1;
      const std::uint64_t v = (low + mask) & ~mask;
      if (v <= hi) {
        low = v;
        break;
      }
    }
    for (int i = 0; i < 5; ++i) shift_low();
    while (size > 0 && out[size - 1] == 0) --size;
  }
};

}  // namespace kvscope::kernels::detail
