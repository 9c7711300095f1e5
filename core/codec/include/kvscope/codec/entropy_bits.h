// SPDX-License-Identifier: Apache-2.0
#pragma once

// The ideal code length of a symbol histogram. One definition for the codec
// and the GPU encoder's host side, whose raw/delta choices must agree bit for
// bit (same operations in the same order).

#include <cmath>
#include <cstdint>
#include <span>

namespace kvscope::codec {

/// sum over symbols of count * log2(total / count), in bits (0 for an empty
/// histogram). `Count` is any unsigned integer type.
template <typename Count>
double entropy_bits(std::span<const Count> counts) {
  std::uint64_t total = 0;
  for (auto c : counts) total += c;
  if (total == 0) return 0;
  double bits = 0;
  const double lt = std::log2(double(total));
  for (auto c : counts)
    if (c) bits += double(c) * (lt - std::log2(double(c)));
  return bits;
}

}  // namespace kvscope::codec
