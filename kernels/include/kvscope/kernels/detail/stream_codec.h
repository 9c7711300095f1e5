#pragma once

// Per-stream encode and decode (see stream_table.h for the format). One GPU
// thread runs one call; the CPU reference runs the same functions.

#include <cmath>
#include <cstdint>

#include "kvscope/kernels/detail/fp16_hd.h"
#include "kvscope/kernels/detail/hd.h"
#include "kvscope/kernels/detail/range_coder.h"
#include "kvscope/kernels/stream_table.h"

namespace kvscope::kernels::detail {

KVSCOPE_HD int symbol_center(int n) {
  return n / 2;
}

/// Symbol of value x with step and n symbols: clamp(rint(x/step)) + n/2.
KVSCOPE_HD int quantize_symbol(float x, float step, int n) {
  const int center = symbol_center(n);
  if (!(step > 0.0f)) return center;
  const float q = rintf(x / step);
  if (!(q == q)) return center;
  if (q > static_cast<float>(n - 1 - center)) return n - 1;
  if (q < -static_cast<float>(center)) return 0;
  return static_cast<int>(q) + center;
}

KVSCOPE_HD float symbol_value(int s, float step, int n) {
  return static_cast<float>(s - symbol_center(n)) * step;
}

/// Step for values whose largest magnitude is `absmax` with n symbols:
/// absmax maps to (n-1)/2 steps, which both sides of the symbol range hold.
KVSCOPE_HD float step_for(float absmax, int n) {
  const int half = (n - 1) / 2;
  if (!(absmax > 0.0f) || half == 0) return 0.0f;
  const float step = absmax / static_cast<float>(half);
  return step < 3.0e38f ? step : 3.0e38f;
}

/// Visits the stream's symbols in coding order: f(token, is_anchor, symbol, reconstructed).
/// `in` points at the stream's first value (stride `stride`).
template <class Visit>
KVSCOPE_HD void quantize_stream(const float* in, std::uint32_t stride, std::uint32_t tokens, int group_size,
                                const ChannelModel& m, Visit&& visit) {
  float anchor = 0.0f;
  std::uint32_t g = 0;
  for (std::uint32_t t = 0; t < tokens;
       ++t, g = (g + 1 == static_cast<std::uint32_t>(group_size) ? 0 : g + 1)) {
    const float x = in[static_cast<std::uint64_t>(t) * stride];
    if (g == 0) {
      const int s = quantize_symbol(x, m.anchor_step, m.anchor_symbols);
      anchor = symbol_value(s, m.anchor_step, m.anchor_symbols);
      visit(t, true, s, anchor);
    } else {
      const int s = quantize_symbol(x - anchor, m.delta_step, m.delta_symbols);
      visit(t, false, s, anchor + symbol_value(s, m.delta_step, m.delta_symbols));
    }
  }
}

/// Largest |anchor| of a stream (NaN counts as 0).
KVSCOPE_HD float anchor_absmax(const float* in, std::uint32_t stride, std::uint32_t tokens, int group_size) {
  float m = 0.0f;
  for (std::uint32_t t = 0; t < tokens; t += static_cast<std::uint32_t>(group_size)) {
    const float a = fabsf(in[static_cast<std::uint64_t>(t) * stride]);
    if (a == a && a > m) m = a;
  }
  return m;
}

/// Largest |x - reconstructed anchor| of a stream's non-anchor tokens, with
/// the anchor quantized by `m` (so deltas never clip: error <= step / 2).
KVSCOPE_HD float delta_absmax(const float* in, std::uint32_t stride, std::uint32_t tokens, int group_size,
                              const ChannelModel& m) {
  float anchor = 0.0f, mx = 0.0f;
  std::uint32_t g = 0;
  for (std::uint32_t t = 0; t < tokens; ++t) {
    const float x = in[static_cast<std::uint64_t>(t) * stride];
    if (g == 0) {
      anchor =
          symbol_value(quantize_symbol(x, m.anchor_step, m.anchor_symbols), m.anchor_step, m.anchor_symbols);
    } else {
      const float a = fabsf(x - anchor);
      if (a == a && a > mx) mx = a;
    }
    if (++g == static_cast<std::uint32_t>(group_size)) g = 0;
  }
  return mx;
}

/// Encodes one stream into [out, out + capacity); returns its byte length,
/// or sets kFlagOverflow in `flags` when it does not fit.
KVSCOPE_HD std::uint32_t encode_stream(const float* in, std::uint32_t stride, std::uint32_t tokens,
                                       int group_size, const ChannelModel& m, const std::uint16_t* cdfs,
                                       std::uint8_t* out, std::uint32_t capacity, std::uint32_t& flags) {
  RangeEncoder enc;
  enc.init(out, capacity);
  const std::uint16_t* ca = cdfs + m.anchor_cdf;
  const std::uint16_t* cd = cdfs + m.delta_cdf;
  quantize_stream(in, stride, tokens, group_size, m, [&](std::uint32_t, bool is_anchor, int s, float) {
    if (is_anchor) {
      enc.encode(ca, m.anchor_symbols, s);
    } else {
      enc.encode(cd, m.delta_symbols, s);
    }
  });
  enc.finish();
  if (enc.overflow) flags |= kFlagOverflow;
  return enc.size;
}

/// Upper bound of an encoded stream's size: each symbol narrows the range by
/// at most 2^-16 (<= 2 bytes plus a fraction), plus the 4 flush bytes.
KVSCOPE_HD std::uint32_t stream_capacity(std::uint32_t tokens) {
  return tokens * 3u + 8u;
}

/// Decodes one stream into fp16 bits at out[t * stride]; returns error flags.
KVSCOPE_HD std::uint32_t decode_stream(const std::uint8_t* bytes, std::uint32_t length, std::uint32_t tokens,
                                       int group_size, const ChannelModel& m, const std::uint16_t* cdfs,
                                       std::uint16_t* out, std::uint32_t stride) {
  RangeDecoder dec;
  dec.init(bytes, length);
  const std::uint16_t* ca = cdfs + m.anchor_cdf;
  const std::uint16_t* cd = cdfs + m.delta_cdf;
  float anchor = 0.0f;
  std::uint32_t g = 0;  // position in the group, avoids a modulo per token
  for (std::uint32_t t = 0; t < tokens; ++t) {
    float x;
    if (g == 0) {
      const int s = dec.decode(ca, m.anchor_symbols);
      anchor = symbol_value(s, m.anchor_step, m.anchor_symbols);
      x = anchor;
    } else {
      const int s = dec.decode(cd, m.delta_symbols);
      x = anchor + symbol_value(s, m.delta_step, m.delta_symbols);
    }
    out[static_cast<std::uint64_t>(t) * stride] = float_to_half(x);
    if (++g == static_cast<std::uint32_t>(group_size)) g = 0;
  }
  if (dec.pos != dec.end) dec.flags |= kFlagTrailing;
  return dec.flags;
}

/// Deterministic 16-bit CDF from symbol counts: every symbol gets frequency
/// >= 1, the rest of 65536 is shared in proportion to the counts, leftovers
/// go to the most frequent symbol (lowest index on ties). Needs n <= 65536.
KVSCOPE_HD void build_cdf(const std::uint32_t* counts, int n, std::uint16_t* cdf) {
  std::uint64_t total = 0;
  int best = 0;
  for (int i = 0; i < n; ++i) {
    total += counts[i];
    if (counts[i] > counts[best]) best = i;
  }
  const std::uint64_t spare = kCdfTotal - static_cast<std::uint32_t>(n);
  std::uint64_t used = 0;
  // First pass: the leftover, so it can be added to `best` while writing.
  for (int i = 0; i < n; ++i) used += 1 + (total == 0 ? 0 : counts[i] * spare / total);
  const std::uint64_t leftover = kCdfTotal - used;
  std::uint32_t acc = 0;
  for (int i = 0; i < n; ++i) {
    cdf[i] = static_cast<std::uint16_t>(acc);
    std::uint64_t f = 1 + (total == 0 ? 0 : counts[i] * spare / total);
    if (i == best) f += leftover;
    acc += static_cast<std::uint32_t>(f);
  }
}

}  // namespace kvscope::kernels::detail
