// SPDX-License-Identifier: Apache-2.0
#include "entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvscope::codec::detail {

FreqModel FreqModel::from_counts(std::span<const std::uint64_t> counts, bool floor_all, int total_bits) {
  const std::uint32_t prob_total = 1u << total_bits;
  FreqModel m;
  const int n = int(counts.size());
  std::uint64_t total = 0;
  int nonzero = 0;
  for (auto c : counts) {
    total += c;
    nonzero += c > 0;
  }
  if (n == 0 || (total == 0 && !floor_all)) return m;
  if ((floor_all ? n : nonzero) > int(prob_total))
    throw Error(ErrorCode::Internal, "alphabet larger than the CDF precision");
  std::vector<std::uint32_t> f(n, 0);
  const bool floor = floor_all || total == 0;
  // Scale, keeping >= 1 for counted (or all) symbols.
  const int reserved = floor ? n : nonzero;
  const double scale = total ? double(prob_total - reserved) / double(total) : 0.0;
  std::int64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    if (counts[i] || floor) f[i] = 1 + std::uint32_t(double(counts[i]) * scale);
    sum += f[i];
  }
  // Hand the rounding remainder to the most frequent symbol (ties: lowest index).
  const int top = int(std::max_element(f.begin(), f.end()) - f.begin());
  const std::int64_t diff = std::int64_t(prob_total) - sum;
  if (diff < 0 && std::int64_t(f[top]) + diff < 1)
    throw Error(ErrorCode::Internal, "frequency normalisation failed");
  f[top] = std::uint32_t(std::int64_t(f[top]) + diff);
  m.cdf.resize(n + 1);
  m.cdf[0] = 0;
  for (int i = 0; i < n; ++i) m.cdf[i + 1] = m.cdf[i] + f[i];
  return m;
}

void FreqModel::write(ByteWriter& w) const {
  if (empty()) {
    w.varint(0);
    w.varint(0);
    return;
  }
  int first = 0, last = size() - 1;
  while (freq(first) == 0) ++first;
  while (freq(last) == 0) --last;
  w.varint(std::uint64_t(first));
  w.varint(std::uint64_t(last - first + 1));
  for (int s = first; s <= last; ++s) w.varint(freq(s));
}

FreqModel FreqModel::scaled_to_16(int total_bits) const {
  FreqModel m = *this;
  for (auto& v : m.cdf) v <<= (kProbBits - total_bits);
  return m;
}

FreqModel FreqModel::read(ByteReader& r, int alphabet, int total_bits) {
  const std::uint32_t prob_total = 1u << total_bits;
  const std::uint64_t first = r.varint();
  const std::uint64_t n = r.varint();
  FreqModel m;
  if (n == 0) {
    if (first != 0) r.fail("empty model with an offset");
    return m;
  }
  if (first >= std::uint64_t(alphabet) || n > std::uint64_t(alphabet) - first)
    r.fail("model exceeds its alphabet");
  m.cdf.assign(alphabet + 1, 0);
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t f = r.varint();
    sum += f;
    if (sum > prob_total) r.fail("model frequencies exceed their total");
    m.cdf[first + i + 1] = std::uint32_t(f);
  }
  if (sum != prob_total)
    r.fail(prob_total == kProbTotal ? "model frequencies do not sum to 65536"
                                    : "model frequencies do not sum to their total");
  for (int s = 0; s < alphabet; ++s) m.cdf[s + 1] += m.cdf[s];
  return m;
}

double FreqModel::cost_bits(std::span<const std::uint64_t> counts) const {
  double bits = 0;
  for (std::size_t s = 0; s < counts.size(); ++s) {
    if (!counts[s]) continue;
    if (int(s) >= size() || freq(int(s)) == 0) return std::numeric_limits<double>::infinity();
    bits += double(counts[s]) * (kProbBits - std::log2(double(freq(int(s)))));
  }
  return bits;
}

void DecodeTable::build(const FreqModel& m) {
  cdf = m.cdf.data();
  size = m.size();
  fill_buckets(bucket, m, kShift);
}

void RangeEncoder::shift_low() {
  if (std::uint32_t(low_) < 0xFF000000u || (low_ >> 32) != 0) {
    const std::uint8_t carry = std::uint8_t(low_ >> 32);
    std::uint8_t temp = cache_;
    do {
      out_.push_back(std::uint8_t(temp + carry));
      temp = 0xFF;
    } while (--cache_size_ != 0);
    cache_ = std::uint8_t(low_ >> 24);
  }
  ++cache_size_;
  low_ = (low_ & 0x00FFFFFFu) << 8;
}

void RangeEncoder::finish() {
  // Any value in [low, low + range) decodes the same symbols; take the one
  // with the most trailing zero bits so trimming saves the most bytes.
  const std::uint64_t hi = low_ + range_ - 1;
  for (int k = 32; k >= 0; k -= 8) {
    const std::uint64_t mask = (std::uint64_t(1) << k) - 1;
    const std::uint64_t v = (low_ + mask) & ~mask;
    if (v <= hi) {
      low_ = v;
      break;
    }
  }
  for (int i = 0; i < 5; ++i) shift_low();
  // The first byte of a stream is always 0 (the initial cache): drop it.
  out_.erase(out_.begin() + std::ptrdiff_t(start_));
  while (out_.size() > start_ && out_.back() == 0) out_.pop_back();
}

}  // namespace kvscope::codec::detail
