// Host-side tests of the kernels' logic: the __host__ __device__ functions the
// CUDA kernels run, executed here on the CPU. They need no GPU, so CI checks
// the per-stream codec, the range coder and the fp16/quantization math even
// where the kernels themselves cannot run.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kernels/detail/fp16_hd.h"
#include "kvscope/kernels/detail/range_coder.h"
#include "kvscope/kernels/detail/stream_codec.h"
#include "kvscope/kernels/quantize.h"
#include "kvscope/kernels/stream_table.h"
#include "synthetic_cache.h"

namespace kvscope::kernels {
namespace {

using testing::make_cache;
using testing::Pattern;
using testing::Rng;

// fp16: the kernels use kvscope/common/fp16.h itself (tests/common/fp16_test.cpp).

std::vector<std::uint16_t> random_cdf(Rng& rng, int n, bool skewed) {
  std::vector<std::uint32_t> counts(n);
  for (int i = 0; i < n; ++i)
    counts[i] = skewed ? (i == n / 2 ? 100000u : rng.next() % 3) : rng.next() % 1000;
  std::vector<std::uint16_t> cdf(n);
  detail::build_cdf(counts.data(), n, cdf.data());
  return cdf;
}

TEST(RangeCoder, RoundTripConsumesExactlyTheEncodedBytes) {
  Rng rng(1);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + static_cast<int>(rng.next() % 300);
    const auto cdf = random_cdf(rng, n, trial % 3 == 0);
    const int count = static_cast<int>(rng.next() % 2000);
    std::vector<int> symbols(count);
    for (int& s : symbols) {
      // Mostly the likely symbols, sometimes the least likely (extremes of the range).
      s = trial % 5 == 0 ? n - 1 : static_cast<int>(rng.next() % n);
    }
    std::vector<std::uint8_t> buf(detail::stream_capacity(count));
    detail::RangeEncoder enc;
    enc.init(buf.data(), static_cast<std::uint32_t>(buf.size()));
    for (int s : symbols) enc.encode(cdf.data(), n, s);
    enc.finish();
    ASSERT_FALSE(enc.overflow);
    detail::RangeDecoder dec;
    dec.init(buf.data(), enc.size);
    for (int i = 0; i < count; ++i)
      ASSERT_EQ(dec.decode(cdf.data(), n), symbols[i]) << "trial " << trial << " i " << i;
    EXPECT_EQ(dec.flags, 0u);
    EXPECT_EQ(dec.pos, dec.end) << "trial " << trial;
  }
}

TEST(RangeCoder, CarryPropagatesThroughRunsOfFF) {
  // The two symbols just below 65536 of a two-symbol CDF with one tiny
  // frequency push `low` up and make carries ripple through 0xFF runs.
  const std::vector<std::uint16_t> cdf = {0, 65535};
  Rng rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int> symbols(500);
    for (int& s : symbols) s = rng.next() % 50 == 0 ? 1 : 0;
    std::vector<std::uint8_t> buf(detail::stream_capacity(500));
    detail::RangeEncoder enc;
    enc.init(buf.data(), static_cast<std::uint32_t>(buf.size()));
    for (int s : symbols) enc.encode(cdf.data(), 2, s);
    enc.finish();
    detail::RangeDecoder dec;
    dec.init(buf.data(), enc.size);
    for (int s : symbols) ASSERT_EQ(dec.decode(cdf.data(), 2), s);
    EXPECT_EQ(dec.flags, 0u);
  }
}

TEST(RangeCoder, CapacityBoundHoldsForTheLeastLikelySymbol) {
  const int n = 4096;
  std::vector<std::uint32_t> counts(n, 0);
  counts[0] = 1u << 30;
  std::vector<std::uint16_t> cdf(n);
  detail::build_cdf(counts.data(), n, cdf.data());
  const std::uint32_t tokens = 1000;
  std::vector<std::uint8_t> buf(detail::stream_capacity(tokens));
  detail::RangeEncoder enc;
  enc.init(buf.data(), static_cast<std::uint32_t>(buf.size()));
  for (std::uint32_t i = 0; i < tokens; ++i) enc.encode(cdf.data(), n, n - 1);  // frequency 1 each time
  enc.finish();
  EXPECT_FALSE(enc.overflow);
  EXPECT_LE(enc.size, tokens * 2 + 5);
}

TEST(RangeCoder, TruncatedOrGarbageInputIsFlaggedNotCrashing) {
  Rng rng(5);
  const auto cdf = random_cdf(rng, 17, false);
  std::vector<std::uint8_t> buf(detail::stream_capacity(400));
  detail::RangeEncoder enc;
  enc.init(buf.data(), static_cast<std::uint32_t>(buf.size()));
  for (int i = 0; i < 400; ++i) enc.encode(cdf.data(), 17, static_cast<int>(rng.next() % 17));
  enc.finish();
  for (std::uint32_t cut = 0; cut < enc.size; ++cut) {
    detail::RangeDecoder dec;
    dec.init(buf.data(), cut);
    for (int i = 0; i < 400; ++i) {
      const int s = dec.decode(cdf.data(), 17);
      ASSERT_GE(s, 0);
      ASSERT_LT(s, 17);
    }
    EXPECT_NE(dec.flags & detail::kFlagOverrun, 0u) << "cut at " << cut;
  }
}

TEST(BuildCdf, StrictlyIncreasingFromZeroForAnyCounts) {
  Rng rng(9);
  for (int trial = 0; trial < 500; ++trial) {
    const int n = 1 + static_cast<int>(rng.next() % kMaxSymbols);
    std::vector<std::uint32_t> counts(n);
    for (auto& c : counts)
      c = trial % 4 == 0 ? 0 : static_cast<std::uint32_t>(rng.next() % (trial % 2 ? 5 : 1000000));
    std::vector<std::uint16_t> cdf(n);
    detail::build_cdf(counts.data(), n, cdf.data());
    ASSERT_EQ(cdf[0], 0);
    for (int i = 1; i < n; ++i) ASSERT_GT(cdf[i], cdf[i - 1]) << "n " << n;
  }
}

TEST(QuantMath, SymbolsStayInRangeAndErrorIsHalfAStep) {
  Rng rng(11);
  for (int n : {3, 4, 16, 17, 32, 64, 255}) {
    const float absmax = 3.5f;
    const float step = detail::step_for(absmax, n);
    for (int i = 0; i < 20000; ++i) {
      const float x = (rng.uniform() * 2 - 1) * absmax;
      const int s = detail::quantize_symbol(x, step, n);
      ASSERT_GE(s, 0);
      ASSERT_LT(s, n);
      EXPECT_LE(std::fabs(detail::symbol_value(s, step, n) - x), step * 0.5f * 1.0001f)
          << "n " << n << " x " << x;
    }
    EXPECT_EQ(detail::quantize_symbol(std::nanf(""), step, n), detail::symbol_center(n));
  }
}

struct ShapeCase {
  kv::CacheShape shape;
  int chunk_tokens;
  int group_size;
};

// Odd channel counts, a last chunk shorter than the rest, groups that do
// not divide the chunk, single-token chunks.
const ShapeCase kShapes[] = {
    {{2, 3, 300, 5}, 128, 10},  // 15 channels, last chunk 44 tokens
    {{3, 1, 37, 7}, 16, 4},     // last chunk 5 tokens
    {{1, 2, 64, 64}, 64, 10},   // one full chunk
    {{2, 1, 9, 3}, 1, 1},       // every token its own chunk and anchor
    {{4, 2, 200, 16}, 96, 7},
};

double max_step_error(const StreamTable& t, const kv::KVCache& original, const kv::KVCache& decoded) {
  // Worst |error| / bound over all elements; the bound is half the step of
  // the element's kind (anchor or delta) plus the final fp16 rounding.
  double worst = 0;
  const auto& s = original.shape();
  for (const StreamDesc& d : t.streams) {
    const ChannelModel& m = t.models[d.model];
    for (std::uint32_t i = 0; i < d.tokens; ++i) {
      const std::size_t e = d.out_offset + static_cast<std::size_t>(i) * d.out_stride;
      const float x = original.data()[e], y = decoded.data()[e];
      const float step = i % t.group_size == 0 ? m.anchor_step : m.delta_step;
      const double bound = step * 0.5 * 1.001 + std::max(std::fabs(x), std::fabs(y)) * 0.0005 + 6e-8;
      worst = std::max(worst, std::fabs(double(x) - double(y)) / bound);
    }
  }
  (void)s;
  return worst;
}

TEST(CpuStreamCodec, RoundTripWithinHalfAStepForEveryShape) {
  for (const auto& c : kShapes) {
    for (Pattern p : {Pattern::Realistic, Pattern::Random}) {
      const auto cache = make_cache(c.shape, p, 42, 2);
      EncodeParams params;
      params.chunk_tokens = c.chunk_tokens;
      params.group_size = c.group_size;
      const StreamTable t = cpu_encode(cache, params, 2);
      ASSERT_NO_THROW(validate(t));
      EXPECT_EQ(t.chunks(), (c.shape.tokens + c.chunk_tokens - 1) / c.chunk_tokens);
      const kv::KVCache decoded = cpu_decode(t, 2);
      EXPECT_LE(max_step_error(t, cache, decoded), 1.0) << "tokens " << c.shape.tokens;
    }
  }
}

TEST(CpuStreamCodec, DeterministicAndSmallerOnRealisticCaches) {
  const kv::CacheShape shape{4, 2, 512, 32};
  const auto cache = make_cache(shape, Pattern::Realistic, 1, 2);
  const StreamTable a = cpu_encode(cache, {}, 2);
  const StreamTable b = cpu_encode(cache, {}, 1);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.cdfs, b.cdfs);
  EXPECT_EQ(a.models, b.models);
  // Entropy coding of deltas beats 8 bits per value by a wide margin on
  // smooth channels (the whole point of CacheGen).
  const double bits = 8.0 * double(a.payload.size()) / double(shape.elements());
  EXPECT_LT(bits, 5.0);
}

TEST(CpuStreamCodec, CorruptTablesAndBytesAreErrorsNotCrashes) {
  const kv::CacheShape shape{2, 1, 100, 6};
  const auto cache = make_cache(shape, Pattern::Realistic, 3, 2);
  EncodeParams params;
  params.chunk_tokens = 40;
  const StreamTable good = cpu_encode(cache, params, 2);
  {
    StreamTable t = good;  // any flipped payload bit fails the chunk CRC
    t.payload[t.payload.size() / 2] ^= 0x10;
    try {
      cpu_decode(t, 1);
      FAIL() << "corrupt payload decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Checksum);
    }
  }
  {
    StreamTable t = good;  // a stream cut short by one byte: the decoder overruns
    t.streams[3].byte_length -= 1;
    t.streams[4].byte_offset -= 1;
    t.streams[4].byte_length += 1;
    seal(t);
    try {
      cpu_decode(t, 1);
      FAIL() << "shortened stream decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format);
      EXPECT_NE(std::string(e.what()).find("stream 3"), std::string::npos) << e.what();
    }
  }
  auto expect_format = [&](StreamTable t, const char* what) {
    try {
      cpu_decode(t, 1);
      ADD_FAILURE() << what << ": decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Format) << what << ": " << e.what();
    }
  };
  StreamTable t = good;
  t.cdfs[t.models[0].delta_cdf + 2] = t.cdfs[t.models[0].delta_cdf + 1];
  expect_format(t, "non-increasing CDF");
  t = good;
  t.models[5].anchor_cdf = static_cast<std::uint32_t>(t.cdfs.size());
  expect_format(t, "CDF out of table");
  t = good;
  t.streams[7].out_offset += 1;
  expect_format(t, "moved output");
  t = good;
  t.streams.back().byte_length += 1;
  expect_format(t, "stream past the payload");
  t = good;
  t.models[2].delta_step = std::nanf("");
  expect_format(t, "NaN step");
  t = good;
  t.chunk_crc.pop_back();
  expect_format(t, "missing CRC");
  // Tampered bytes with a matching CRC (as if altered before sealing): the
  // device-side flags are the last line; every such decode must end in a
  // Format error or a cache, never a crash. A range coder maps many altered
  // bytes to other valid symbols, so only a share is flagged (about 45%
  // measured): that is why the chunk CRC exists.
  Rng rng(13);
  int flagged = 0;
  for (int i = 0; i < 200; ++i) {
    StreamTable u = good;
    u.payload[rng.next() % u.payload.size()] ^= static_cast<std::uint8_t>(1u << (rng.next() % 8));
    seal(u);
    try {
      cpu_decode(u, 1);
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::Format);
      ++flagged;
    }
  }
  EXPECT_GT(flagged, 50);
}

TEST(CpuQuantize, Int8AndInt4WithinHalfAStep) {
  const kv::CacheShape shape{2, 3, 33, 5};  // odd channel count: int4 rows pad a nibble
  const auto cache = make_cache(shape, Pattern::Realistic, 5, 2);
  for (int bits : {8, 4}) {
    const QuantizedCache q = cpu_quantize(cache, bits);
    ASSERT_EQ(q.values.size(), q.rows() * q.row_bytes());
    const kv::KVCache back = cpu_dequantize(q);
    for (int lk = 0; lk < shape.layers * 2; ++lk) {
      for (int t = 0; t < shape.tokens; ++t) {
        const float scale = half_to_float(q.scales[static_cast<std::size_t>(lk) * shape.tokens + t]);
        for (int c = 0; c < shape.channels(); ++c) {
          const auto kind = static_cast<kv::Kind>(lk % 2);
          const float x = cache.channel_value(lk / 2, kind, t, c), y = back.channel_value(lk / 2, kind, t, c);
          // Half a step, plus the clip of absmax when its scale rounded down, plus fp16 output rounding.
          ASSERT_LE(std::fabs(x - y), scale * 0.5f + std::fabs(x) * 0.0015f + 1e-6f) << "bits " << bits;
        }
      }
    }
  }
  EXPECT_THROW(cpu_quantize(cache, 5), Error);
  QuantizedCache bad = cpu_quantize(cache, 4);
  bad.values.pop_back();
  EXPECT_THROW(cpu_dequantize(bad), Error);
}

}  // namespace
}  // namespace kvscope::kernels
