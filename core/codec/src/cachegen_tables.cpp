// SPDX-License-Identifier: Apache-2.0
// cachegen's shipped symbol tables at a chosen precision (`table_bits`,
// docs/bitstream.md "cachegen"): fewer bits per frequency make the tables
// smaller, at a small cost in coded symbols.
#include "cachegen_internal.h"

namespace kvscope::codec::detail::cachegen {

FreqModel table_model(std::span<const std::uint64_t> counts, int table_bits) {
  if (table_bits == kProbBits) return FreqModel::from_counts(counts);
  return FreqModel::from_counts(counts, false, table_bits).scaled_to_16(table_bits);
}

void write_table_model(ByteWriter& w, const FreqModel& m, int table_bits) {
  if (table_bits == kProbBits || m.empty()) {
    m.write(w);
    return;
  }
  FreqModel coarse = m;
  for (auto& v : coarse.cdf) v >>= (kProbBits - table_bits);
  // Written with the 16-bit serialisation: its frequencies are those of `m`
  // divided by 2^(16 - table_bits).
  coarse.write(w);
}

FreqModel read_table_model(ByteReader& r, int alphabet, int table_bits) {
  FreqModel m = FreqModel::read(r, alphabet, table_bits);
  return table_bits == kProbBits || m.empty() ? m : m.scaled_to_16(table_bits);
}

}  // namespace kvscope::codec::detail::cachegen
