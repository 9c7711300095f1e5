#pragma once

// 32-bit range coder over 16-bit-precision CDFs (total frequency 1 << 16),
// carry propagation as in LZMA's rc (cache byte + pending 0xFF run). Byte
// oriented, one division per symbol: a good fit for one GPU thread per
// independent stream. The leading byte LZMA always writes as 0 is omitted,
// so a stream is exactly the bytes after it; the decoder starts by reading 4.
//
// A CDF of n symbols is n uint16 values cdf[0..n-1], cdf[0] == 0, strictly
// increasing; cdf[n] is implicitly 65536, so every symbol has frequency >= 1.

#include <cstdint>

#include "kvscope/kernels/detail/hd.h"

namespace kvscope::kernels::detail {

inline constexpr std::uint32_t kCdfBits = 16;
inline constexpr std::uint32_t kCdfTotal = 1u << kCdfBits;
inline constexpr std::uint32_t kRangeTop = 1u << 24;

/// Device-side error bits (OR-ed per stream, then over a launch).
enum DecodeFlag : std::uint32_t {
  kFlagBadCode = 1u,    ///< code fell outside the coded interval: corrupt bytes
  kFlagOverrun = 2u,    ///< the decoder needed more bytes than the stream has
  kFlagBadIndex = 4u,   ///< a stream or model index out of range (host validation missed it)
  kFlagOverflow = 8u,   ///< the encoder's output did not fit its scratch capacity
  kFlagTrailing = 16u,  ///< the stream has bytes its symbols did not use
};

KVSCOPE_HD std::uint32_t cdf_at(const std::uint16_t* cdf, int n, int i) {
  return i >= n ? kCdfTotal : static_cast<std::uint32_t>(cdf[i]);
}

/// Largest s in [0, n) with cdf[s] <= v (v < 65536, cdf[0] == 0).
KVSCOPE_HD int cdf_search(const std::uint16_t* cdf, int n, std::uint32_t v) {
  int lo = 0, hi = n;  // invariant: cdf[lo] <= v < cdf_at(hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (static_cast<std::uint32_t>(cdf[mid]) <= v) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

struct RangeDecoder {
  const std::uint8_t* pos = nullptr;
  const std::uint8_t* end = nullptr;
  std::uint32_t range = 0xffffffffu;
  std::uint32_t code = 0;
  std::uint32_t flags = 0;

  KVSCOPE_HD std::uint8_t next_byte() {
    if (pos < end) return *pos++;
    flags |= kFlagOverrun;
    return 0;
  }

  KVSCOPE_HD void init(const std::uint8_t* begin, std::uint32_t length) {
    pos = begin;
    end = begin + length;
    range = 0xffffffffu;
    code = 0;
    flags = 0;
    for (int i = 0; i < 4; ++i) code = (code << 8) | next_byte();
  }

  /// Decodes one symbol with `cdf` (n symbols). On corrupt input sets a flag
  /// and returns a valid symbol index anyway, so callers never index out of range.
  KVSCOPE_HD int decode(const std::uint16_t* cdf, int n) {
    const std::uint32_t r = range >> kCdfBits;  // >= 256 since range >= 2^24
    std::uint32_t v = code / r;
    if (v >= kCdfTotal) {
      flags |= kFlagBadCode;
      v = kCdfTotal - 1;
    }
    const int s = cdf_search(cdf, n, v);
    const std::uint32_t lo = cdf[s];
    const std::uint32_t hi = cdf_at(cdf, n, s + 1);
    code -= r * lo;
    range = r * (hi - lo);
    while (range < kRangeTop) {
      code = (code << 8) | next_byte();
      range <<= 8;
    }
    return s;
  }
};

// The encoder emits exactly one byte per renormalisation shift plus 4 at the
// end, and the decoder reads 4 at the start plus one per shift, so a valid
// stream is consumed exactly: leftover bytes mean corruption.

/// Writes into caller-provided memory [out, out + capacity). When the output
/// does not fit, `overflow` is set and further bytes are dropped (the caller
/// then reports an error); nothing is written out of bounds.
struct RangeEncoder {
  std::uint8_t* out = nullptr;
  std::uint32_t capacity = 0;
  std::uint32_t size = 0;
  bool overflow = false;
  std::uint64_t low = 0;
  std::uint32_t range = 0xffffffffu;
  std::uint8_t cache = 0;
  std::uint32_t cache_size = 1;
  bool first = true;  // the first byte LZMA emits is always 0: skipped

  KVSCOPE_HD void init(std::uint8_t* buffer, std::uint32_t cap) {
    out = buffer;
    capacity = cap;
    size = 0;
    overflow = false;
    low = 0;
    range = 0xffffffffu;
    cache = 0;
    cache_size = 1;
    first = true;
  }

  KVSCOPE_HD void put(std::uint8_t byte) {
    if (first) {
      first = false;
      return;
    }
    if (size < capacity) {
      out[size++] = byte;
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
      cache = static_cast<std::uint8_t>(static_cast<std::uint32_t>(low) >> 24);
    }
    ++cache_size;
    low = (low & 0x00ffffffu) << 8;
  }

  KVSCOPE_HD void encode(const std::uint16_t* cdf, int n, int s) {
    const std::uint32_t r = range >> kCdfBits;
    const std::uint32_t lo = cdf[s];
    const std::uint32_t hi = cdf_at(cdf, n, s + 1);
    low += static_cast<std::uint64_t>(r) * lo;
    range = r * (hi - lo);
    while (range < kRangeTop) {
      range <<= 8;
      shift_low();
    }
  }

  KVSCOPE_HD void finish() {
    for (int i = 0; i < 5; ++i) shift_low();
  }
};

}  // namespace kvscope::kernels::detail
