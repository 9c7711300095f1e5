// SPDX-License-Identifier: Apache-2.0
#pragma once

// Entropy coding on 16-bit CDF models (docs/bitstream.md "Range coder"):
// frequency normalisation, the compact table serialisation, and a byte-wise
// range coder with carry propagation (LZMA style) whose flush emits the
// fewest bytes that still decode.

#include <cstdint>
#include <span>
#include <vector>

#include "byte_io.h"

namespace kvscope::codec::detail {

inline constexpr int kProbBits = 16;
inline constexpr std::uint32_t kProbTotal = 1u << kProbBits;

/// A symbol model over symbols [0, size): cdf has size+1 entries, cdf[0] = 0,
/// cdf[size] = 65536, non-decreasing. Symbols with zero frequency cannot be coded.
struct FreqModel {
  std::vector<std::uint32_t> cdf;
  int size() const { return cdf.empty() ? 0 : int(cdf.size()) - 1; }
  bool empty() const { return cdf.empty(); }
  std::uint32_t freq(int s) const { return cdf[s + 1] - cdf[s]; }

  /// Normalises counts to a total of 2^total_bits (65536 by default), every
  /// counted symbol keeping a frequency >= 1; `floor_all` gives every symbol
  /// >= 1 (for models that must code symbols unseen in calibration).
  /// All-zero counts give an empty model (unless floor_all). Deterministic.
  /// A model with total_bits < 16 is not codable until scaled (scaled_to_16).
  static FreqModel from_counts(std::span<const std::uint64_t> counts, bool floor_all = false,
                               int total_bits = kProbBits);
  /// This model's frequencies multiplied by 2^(16 - total_bits): the 16-bit
  /// model of a model normalised to 2^total_bits.
  FreqModel scaled_to_16(int total_bits) const;

  /// Compact form: varint first, varint n, then n varint frequencies of
  /// symbols [first, first+n); n = 0 is the empty model.
  void write(ByteWriter& w) const;
  /// Reads a model over `alphabet` symbols; Error(Format) unless the
  /// frequencies sum to 2^total_bits (65536 by default) and lie inside the
  /// alphabet.
  static FreqModel read(ByteReader& r, int alphabet, int total_bits = kProbBits);

  /// Cross-entropy in bits of coding `counts` with this model (inf if a
  /// counted symbol has zero frequency).
  double cost_bits(std::span<const std::uint64_t> counts) const;
};

/// Fills a decoder's bucket table (DecodeTable::kBuckets + 1 entries): bucket
/// b < kBuckets holds the symbol whose range [cdf[s], cdf[s+1]) contains
/// b << kShift, and the sentinel bucket kBuckets the last symbol, so
/// bucket[b + 1] bounds the symbol of every value in bucket b from above.
/// `Index` is std::uint16_t for DecodeTable, std::uint32_t for the AVX2
/// decoder's gathered tables.
template <typename Index>
void fill_buckets(Index* bucket, const FreqModel& m, int shift) {
  const std::uint32_t w = 1u << shift;
  for (int s = 0; s < m.size(); ++s) {
    const std::uint32_t b0 = (m.cdf[s] + w - 1) >> shift, b1 = (m.cdf[s + 1] + w - 1) >> shift;
    for (std::uint32_t b = b0; b < b1; ++b) bucket[b] = Index(s);
  }
  bucket[kProbTotal >> shift] = Index(m.size() > 0 ? m.size() - 1 : 0);
}

/// The largest symbol s in [lo, hi] with cdf[s] <= v, by binary search; the
/// caller guarantees cdf[lo] <= v < cdf[hi + 1]. Calibrated tables give every
/// unseen symbol a frequency of 1, so one bucket can hold a hundred symbol
/// boundaries, and stepping through them one by one made decoding with them
/// about 20% slower.
inline int last_symbol_at_or_below(const std::uint32_t* cdf, int lo, int hi, std::uint32_t v) {
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (cdf[mid] <= v)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/// Lookup accelerator for decoding: bucket[v >> kShift] = the symbol that
/// holds the bucket's first value. A bucket holds at most one symbol boundary
/// unless a symbol has a frequency below the bucket width (rare by
/// definition), so find() takes one branchless step and then a binary search
/// that almost never runs (a data-dependent loop mispredicts on most symbols).
struct DecodeTable {
  static constexpr int kShift = 8;
  static constexpr int kBuckets = int(kProbTotal >> kShift);
  std::uint16_t bucket[kBuckets + 1];  // + the sentinel (fill_buckets)
  const std::uint32_t* cdf = nullptr;
  int size = 0;
  void build(const FreqModel& m);
  /// The symbol s with cdf[s] <= v < cdf[s+1]; v < 65536.
  int find(std::uint32_t v) const {
    const std::uint32_t b = v >> kShift;
    int s = bucket[b];
    s += int(cdf[s + 1] <= v);
    if (cdf[s + 1] <= v) s = last_symbol_at_or_below(cdf, s + 1, bucket[b + 1], v);
    return s;
  }
};

class RangeEncoder {
 public:
  explicit RangeEncoder(std::vector<std::uint8_t>& out) : out_(out), start_(out.size()) {}
  void encode(std::uint32_t cum, std::uint32_t freq) {
    const std::uint32_t r = range_ >> kProbBits;
    low_ += std::uint64_t(r) * cum;
    range_ = r * freq;
    while (range_ < (1u << 24)) {
      range_ <<= 8;
      shift_low();
    }
  }
  /// Ends the stream: picks the value in [low, low+range) with the most
  /// trailing zero bytes, writes it, drops the always-zero first byte and
  /// trailing zero bytes (the decoder reads zeros past the end).
  void finish();

 private:
  void shift_low();
  std::vector<std::uint8_t>& out_;
  std::size_t start_;
  std::uint64_t low_ = 0;
  std::uint32_t range_ = 0xFFFFFFFFu;
  std::uint8_t cache_ = 0;
  std::uint64_t cache_size_ = 1;
};

/// Why a coded stream does not end exactly as RangeEncoder::finish() ends
/// one, or nullptr when it does (docs/bitstream.md section 2, "End of a
/// stream"), from the decoder's state after the stream's last symbol: `read`
/// bytes read (reads past the end included), `code` and `range`. The checks:
/// no byte left unread, no trailing 0 byte (the encoder drops them), and the
/// final code is the offset finish() picks (the value in the last interval
/// with the most trailing zero bytes), which also catches missing bytes.
/// An empty stream passes exactly when its symbols are a run of the model's
/// lowest symbol, which is all an empty stream can decode to.
inline const char* range_stream_end_error(std::span<const std::uint8_t> stream, std::size_t read,
                                          std::uint32_t code, std::uint32_t range) {
  if (read < stream.size()) return "has trailing bytes";
  if (!stream.empty() && stream.back() == 0) return "ends with a 0 byte";
  // The last 4 bytes read are the encoder's final 32-bit window: low = window - code.
  std::uint32_t window = 0;
  for (std::size_t i = read - 4; i < read; ++i) window = (window << 8) | (i < stream.size() ? stream[i] : 0u);
  const std::uint32_t low = window - code;
  for (int k = 32; k >= 0; k -= 8) {
    const std::uint64_t unit = std::uint64_t(1) << k;
    const std::uint64_t offset = (unit - std::uint64_t(low) % unit) % unit;  // to the next multiple of 2^k
    if (offset <= std::uint64_t(range) - 1)
      return offset == code ? nullptr : "does not end as the encoder ends it";
  }
  return "does not end as the encoder ends it";
}

class RangeDecoder {
 public:
  RangeDecoder() = default;
  explicit RangeDecoder(std::span<const std::uint8_t> in) : data_(in.data()), size_(in.size()) {
    for (int i = 0; i < 4; ++i) code_ = (code_ << 8) | next();
  }
  /// Decodes one symbol. Never reads outside the input; on corrupt input the
  /// symbols are garbage but always valid indices of `t`.
  int decode(const DecodeTable& t) {
    const std::uint32_t r = range_ >> kProbBits;
    std::uint32_t v = code_ / r;
    if (v >= kProbTotal) v = kProbTotal - 1;
    const int s = t.find(v);
    code_ -= r * t.cdf[s];
    range_ = r * (t.cdf[s + 1] - t.cdf[s]);
    renormalize();
    return s;
  }
  /// After the last symbol: range_stream_end_error() of this stream.
  const char* end_error() const { return range_stream_end_error({data_, size_}, pos_, code_, range_); }
  /// Decodes a value v in [0, 2^bits) that was coded as
  /// encode(v << (16 - bits), 1 << (16 - bits)) (bits in [0, 16]): raw bits
  /// at an exact uniform probability.
  std::uint32_t decode_bits(int bits) {
    const std::uint32_t r = range_ >> kProbBits;
    std::uint32_t v = code_ / r;
    if (v >= kProbTotal) v = kProbTotal - 1;
    const std::uint32_t s = v >> (kProbBits - bits);
    code_ -= r * (s << (kProbBits - bits));
    range_ = r << (kProbBits - bits);
    renormalize();
    return s;
  }

 private:
  // Same effect as `while (range_ < 2^24) { range_ <<= 8; code_ = code_ << 8 | next(); }`
  // without data-dependent branches: range_ = r * freq >= 2^8 (r >= 2^8 and
  // freq >= 1 because find() returns a symbol with cdf[s] <= v < cdf[s+1]), so
  // at most two bytes are shifted in. pos_ counts reads past the end too.
  void renormalize() {
    const unsigned n = unsigned(range_ < (1u << 24)) + unsigned(range_ < (1u << 16));
    const std::size_t left = size_ > pos_ ? size_ - pos_ : 0;
    const std::uint32_t b0 = left > 0 ? data_[pos_] : 0u;
    const std::uint32_t b1 = left > 1 ? data_[pos_ + 1] : 0u;
    const std::uint64_t in = (std::uint64_t(code_) << 16) | (b0 << 8) | b1;
    code_ = std::uint32_t(in >> (16 - 8 * n));
    range_ = std::uint32_t(std::uint64_t(range_) << (8 * n));
    pos_ += n;
  }

  std::uint32_t next() {
    const std::uint32_t b = pos_ < size_ ? data_[pos_] : 0u;
    ++pos_;
    return b;
  }
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t pos_ = 0;
  std::uint32_t code_ = 0;
  std::uint32_t range_ = 0xFFFFFFFFu;
};

}  // namespace kvscope::codec::detail
