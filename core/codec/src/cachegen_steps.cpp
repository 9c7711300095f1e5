// SPDX-License-Identifier: Apache-2.0
// cachegen's quantization steps in a chunk payload (docs/bitstream.md
// "cachegen", "Steps"): f16 values, or the same values range coded. Coded
// steps are lossless: a step's f16 bit pattern minus the previous one,
// zigzag mapped, is sent as its bit length (one symbol of a per-chunk
// 17-symbol model) followed by the bits below its leading one (uniform
// symbols of at most 8 bits). A leading byte says whether the chunk's steps
// are coded or, where coding would not pay, plain f16.
#include <bit>
#include <cmath>

#include "cachegen_internal.h"
#include "kvscope/common/fp16.h"

namespace kvscope::codec::detail::cachegen {

namespace {

constexpr int kBuckets = 17;  // bit lengths 0..16 of a zigzag difference
constexpr std::uint8_t kStepsPlain = 0, kStepsCoded = 1;
constexpr std::uint32_t kFirstNonFinite = 0x7c00;  // f16 infinity: steps lie below it

std::uint32_t zigzag(int d) {
  return d >= 0 ? std::uint32_t(d) * 2 : std::uint32_t(-d) * 2 - 1;
}
int unzigzag(std::uint32_t z) {
  return (z & 1) ? -int((z + 1) / 2) : int(z / 2);
}

// The uniform model over 2^bits symbols (bits 1..8), for the extra bits.
const DecodeTable& uniform_table(int bits) {
  struct Tables {
    FreqModel models[9];
    DecodeTable tables[9];
    Tables() {
      for (int b = 1; b <= 8; ++b) {
        std::vector<std::uint64_t> ones(std::size_t(1) << b, 1);
        models[b] = FreqModel::from_counts(ones);
        tables[b].build(models[b]);
      }
    }
  };
  static const Tables t;
  return t.tables[bits];
}

}  // namespace

void write_steps(ByteWriter& w, std::span<const std::uint16_t> steps, const Layout& layout) {
  if (layout.step_coding == Layout::StepCoding::Fp16) {
    for (auto s : steps) w.u16(s);
    return;
  }
  const std::size_t n = steps.size();
  if (n == 0) return;
  if (n == 1) {
    w.u16(steps[0]);
    return;
  }
  std::vector<std::uint8_t> coded;
  ByteWriter cw(coded);
  cw.u8(kStepsCoded);
  cw.u16(steps[0]);
  std::vector<std::uint32_t> z(n - 1);
  std::vector<std::uint64_t> counts(kBuckets, 0);
  for (std::size_t i = 1; i < n; ++i) {
    z[i - 1] = zigzag(int(steps[i]) - int(steps[i - 1]));
    ++counts[std::size_t(std::bit_width(z[i - 1]))];
  }
  const FreqModel model = FreqModel::from_counts(counts);
  model.write(cw);
  std::vector<std::uint8_t> stream;
  RangeEncoder enc(stream);
  for (std::uint32_t v : z) {
    const int b = std::bit_width(v);
    enc.encode(model.cdf[b], model.freq(b));
    // The b - 1 bits below the leading one, high bits first, 8 at a time.
    for (int left = b - 1; left > 0;) {
      const int m = left < 8 ? left : 8;
      left -= m;
      const std::uint32_t piece = (v >> left) & ((1u << m) - 1);
      enc.encode(piece << (kProbBits - m), 1u << (kProbBits - m));
    }
  }
  enc.finish();
  cw.varint(stream.size());
  cw.bytes(stream.data(), stream.size());
  if (coded.size() < 1 + 2 * n) {
    w.bytes(coded.data(), coded.size());
    return;
  }
  w.u8(kStepsPlain);
  for (auto s : steps) w.u16(s);
}

void read_steps(ByteReader& r, std::span<float> steps, const Layout& layout) {
  if (layout.step_coding == Layout::StepCoding::Fp16) {
    for (float& v : steps) {
      v = half_to_float(r.u16());
      if (!std::isfinite(v) || v < 0) r.fail("invalid step");
    }
    return;
  }
  const std::size_t n = steps.size();
  if (n == 0) return;
  const std::uint8_t method = n == 1 ? kStepsPlain : r.u8();
  if (method == kStepsPlain || n == 1) {
    for (float& v : steps) {
      const std::uint16_t h = r.u16();
      if (h >= kFirstNonFinite) r.fail("invalid step");
      v = half_to_float(h);
    }
    return;
  }
  if (method != kStepsCoded) r.fail("unknown step coding");
  std::uint32_t h = r.u16();
  if (h >= kFirstNonFinite) r.fail("invalid step");
  steps[0] = half_to_float(std::uint16_t(h));
  const FreqModel model = FreqModel::read(r, kBuckets);
  if (model.empty()) r.fail("empty step model");
  const std::uint64_t len = r.varint();
  if (len > r.remaining()) r.fail("coded steps exceed the section");
  RangeDecoder rd(r.bytes(std::size_t(len)));
  DecodeTable table;
  table.build(model);
  for (std::size_t i = 1; i < n; ++i) {
    const int b = rd.decode(table);
    std::uint32_t z = b == 0 ? 0u : 1u;
    for (int left = b - 1; left > 0;) {
      const int m = left < 8 ? left : 8;
      left -= m;
      z = (z << m) | std::uint32_t(rd.decode(uniform_table(m)));
    }
    const long next = long(h) + unzigzag(z);
    if (next < 0 || next >= long(kFirstNonFinite)) r.fail("invalid coded step");
    h = std::uint32_t(next);
    steps[i] = half_to_float(std::uint16_t(h));
  }
  if (const char* e = rd.end_error()) r.fail(std::string("the coded steps' stream ") + e);
}

}  // namespace kvscope::codec::detail::cachegen
