// SPDX-License-Identifier: Apache-2.0
#pragma once

// core/codec's cachegen encoder (codec_cachegen.cpp, entropy.cpp) as
// host/device functions: the steps of every scale (token, head, channel),
// quantization and anchor/delta symbol mapping with the scaled anchor
// prediction, frequency normalisation and the range encoder with its
// trimming flush. The GPU encoder and its CPU emulation run these; the host
// test compares the emulation's section payloads with codec::encode's.

#include <cmath>
#include <cstdint>

#include "kvscope/kernels/detail/bitstream_decode.h"
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

/// One (layer, kind) tensor of the cache ([head][token][dim], T tokens) cut
/// into chunks, and where its quantization steps are: per tensor, the steps
/// of all chunks back to back, each chunk's in core/codec's order
/// (Layout::step_index: token t of the chunk, channel c at
/// step_base(c) + t * step_stride()).
struct CachegenGeom {
  std::uint32_t C, D, H, T, chunk_tokens, chunks, group;
  CachegenScale scale;
};

KVSCOPE_HD std::uint32_t cachegen_chunk_count(const CachegenGeom& g, std::uint32_t chunk) {
  const std::uint32_t begin = chunk * g.chunk_tokens;
  return g.T - begin < g.chunk_tokens ? g.T - begin : g.chunk_tokens;
}
/// Steps of a whole tensor: chunks * C (channel), T (token), T * H (head).
KVSCOPE_HD std::uint64_t cachegen_tensor_steps(const CachegenGeom& g) {
  return g.scale == CachegenScale::Channel ? static_cast<std::uint64_t>(g.chunks) * g.C
         : g.scale == CachegenScale::Token ? static_cast<std::uint64_t>(g.T)
                                           : static_cast<std::uint64_t>(g.T) * g.H;
}
/// Index of a chunk's first step among its tensor's steps.
KVSCOPE_HD std::uint64_t cachegen_chunk_step_offset(const CachegenGeom& g, std::uint32_t chunk) {
  const std::uint64_t t0 = static_cast<std::uint64_t>(chunk) * g.chunk_tokens;
  return g.scale == CachegenScale::Channel ? static_cast<std::uint64_t>(chunk) * g.C
         : g.scale == CachegenScale::Token ? t0
                                           : t0 * g.H;
}
KVSCOPE_HD std::uint32_t cachegen_step_base(const CachegenGeom& g, std::uint32_t c) {
  return g.scale == CachegenScale::Channel ? c : g.scale == CachegenScale::Token ? 0u : c / g.D;
}
KVSCOPE_HD std::uint32_t cachegen_step_stride(const CachegenGeom& g) {
  return g.scale == CachegenScale::Channel ? 0u : g.scale == CachegenScale::Token ? 1u : g.H;
}
/// First value of channel c in a chunk (stride D between tokens).
KVSCOPE_HD const float* cachegen_channel_ptr(const float* tensor, const CachegenGeom& g, std::uint32_t chunk,
                                             std::uint32_t c) {
  return tensor +
         (static_cast<std::uint64_t>(c / g.D) * g.T + static_cast<std::uint64_t>(chunk) * g.chunk_tokens) *
             g.D +
         c % g.D;
}

/// Step `i` of a tensor (index as above): fp16-up(absmax over the values it
/// covers / M), as quantize_chunk computes it (a max does not depend on the
/// order); 0xffff if invalid (NaN/inf values, as the codec rejects them).
KVSCOPE_HD std::uint16_t cachegen_slot_step(const float* tensor, const CachegenGeom& g, std::uint64_t i,
                                            int M) {
  float amax = 0.0f;
  auto take = [&](float x) {
    const float a = fabsf(x);
    if (!(a <= 3.4e38f)) return false;  // NaN or infinite
    amax = a > amax ? a : amax;
    return true;
  };
  if (g.scale == CachegenScale::Channel) {
    const auto chunk = static_cast<std::uint32_t>(i / g.C);
    const auto c = static_cast<std::uint32_t>(i - static_cast<std::uint64_t>(chunk) * g.C);
    const float* p = cachegen_channel_ptr(tensor, g, chunk, c);
    const std::uint32_t n = cachegen_chunk_count(g, chunk);
    for (std::uint32_t t = 0; t < n; ++t)
      if (!take(p[static_cast<std::uint64_t>(t) * g.D])) return 0xffffu;
  } else {
    // Token: one token over every head; Head: one token in one head.
    const std::uint64_t t = g.scale == CachegenScale::Token ? i : i / g.H;
    const std::uint32_t h0 = g.scale == CachegenScale::Token ? 0u : static_cast<std::uint32_t>(i - t * g.H);
    const std::uint32_t h1 = g.scale == CachegenScale::Token ? g.H : h0 + 1;
    for (std::uint32_t h = h0; h < h1; ++h) {
      const float* row = tensor + (static_cast<std::uint64_t>(h) * g.T + t) * g.D;
      for (std::uint32_t d = 0; d < g.D; ++d)
        if (!take(row[d])) return 0xffffu;
    }
  }
  return half_up(amax / static_cast<float>(M));
}

/// Q = clamp(round_half_even(x / step), -M, M), 0 when step is 0: the
/// codec's clamp-then-round gives the same for every finite x.
KVSCOPE_HD int cachegen_quantize(float x, float step, int M) {
  if (!(step > 0.0f)) return 0;
  const float r = rintf(x / step);
  return r > static_cast<float>(M) ? M : r < -static_cast<float>(M) ? -M : static_cast<int>(r);
}

/// Visits one stream's symbols in coding order: visit(is_anchor, symbol,
/// raw_symbol). Anchors (t % group == 0) code Q + M; the others
/// Q - P + 2M with P = cachegen_predict(Q_anchor, ratio(step_anchor, step_t)).
/// raw_symbol is Q + M (the symbol if the channel coded every token as an
/// anchor). `in`: token 0's value (stride `stride`); `steps`: token 0's
/// step (token t's at steps[t * step_stride]).
template <class Visit>
KVSCOPE_HD void cachegen_stream_symbols(const float* in, std::uint32_t stride, std::uint32_t tokens,
                                        const std::uint16_t* steps, std::uint32_t step_stride,
                                        std::uint32_t group, int M, Visit&& visit) {
  int anchor_q = 0;
  float anchor_step = 0.0f;
  float step = half_to_float(steps[0]);
  std::uint32_t k = 0;
  for (std::uint32_t t = 0; t < tokens; ++t) {
    if (step_stride != 0 && t != 0) step = half_to_float(steps[static_cast<std::uint64_t>(t) * step_stride]);
    const int q = cachegen_quantize(in[static_cast<std::uint64_t>(t) * stride], step, M);
    if (k == 0) {
      anchor_q = q;
      anchor_step = step;
      visit(true, q + M, q + M);
    } else {
      visit(false, q - cachegen_predict(anchor_q, cachegen_anchor_ratio(anchor_step, step), M) + 2 * M,
            q + M);
    }
    if (++k == group) k = 0;
  }
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
