// SPDX-License-Identifier: Apache-2.0
// The AVX2 cachegen decoder (core/codec/src/cachegen_block_avx2.cpp) must be
// bit-identical to the scalar decoder: same values on valid streams, same
// verdict and values on tampered ones.
#include <gtest/gtest.h>

#include <random>

#include "cachegen_block_avx2.h"
#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

using detail::cachegen::set_simd_decode;
using detail::cachegen::simd_decode_enabled;

struct ScalarDecode {
  ScalarDecode() { set_simd_decode(false); }
  ~ScalarDecode() { set_simd_decode(true); }
};

// Decodes with one path; "error" when it throws.
std::string outcome(std::span<const std::uint8_t> bytes, bool simd) {
  std::optional<ScalarDecode> scalar;
  if (!simd) scalar.emplace();
  DecodeOptions o;
  o.threads = 1;
  o.max_elements = 1 << 22;
  try {
    const auto d = decode(bytes, o);
    return std::to_string(test::hash_values(d.data()));
  } catch (const Error& e) {
    return std::string("error: ") + e.what();
  }
}

const std::vector<ParamSet>& configs() {
  static const std::vector<ParamSet> c = {
      {},
      {{"scale", "head"}, {"delta", "always"}},
      {{"scale", "channel"}, {"delta", "always"}, {"group_size", "7"}},
      {{"scale", "token"}, {"delta", "never"}, {"chunk_tokens", "33"}},
      {{"scale", "token"},
       {"delta", "always"},
       {"group_size", "3"},
       {"key_bins", "256,8"},
       {"key_layer_splits", "1"}},
      // Version 3: sinks shift the blocks' first token; coded steps feed the same decoder.
      {{"sinks", "3"}, {"step_coding", "coded"}, {"table_bits", "11"}, {"chunk_tokens", "64"}},
  };
  return c;
}

TEST(SimdDecode, SameValuesAsTheScalarDecoder) {
  if (!simd_decode_enabled()) GTEST_SKIP() << "this CPU has no AVX2 (or KVSCOPE_NO_SIMD is set)";
  const auto cache = synthetic_cache({3, 2, 150, 16}, 77);
  for (const auto& p : configs()) {
    const auto r = find_codec("cachegen").encode(cache, p);
    const std::string a = outcome(r.bytes, true), b = outcome(r.bytes, false);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.rfind("error", 0), std::string::npos) << a;
  }
}

// Guards the lane-parallel renormalisation and table lookup against corrupt
// input: any divergence from the scalar decoder (a crash, another value, or
// another verdict) fails here.
TEST(SimdDecode, TamperedStreamsGetTheScalarVerdict) {
  if (!simd_decode_enabled()) GTEST_SKIP() << "this CPU has no AVX2 (or KVSCOPE_NO_SIMD is set)";
  const auto cache = synthetic_cache({2, 1, 40, 16}, 5);
  int errors = 0, total = 0;
  for (const auto& p : configs()) {
    const auto valid = find_codec("cachegen").encode(cache, p).bytes;
    for (const auto& m : test::mutations(valid, 150, 9)) {
      const std::string a = outcome(m, true), b = outcome(m, false);
      ASSERT_EQ(a, b);
      errors += a.rfind("error", 0) == 0;
      ++total;
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_LT(errors, total) << "some mutations must decode (resealed payload flips)";
}

// A calibrated table gives every symbol unseen in calibration a frequency of
// 1, so a few buckets of DecodeTable hold a hundred symbol boundaries: the
// shape of model the binary search in DecodeTable::find and in the AVX2 lanes
// exists for. One dominant symbol, then `rare` symbols of frequency 1..3 on
// either side.
detail::FreqModel crowded_model(int rare, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint64_t> counts(std::size_t(2 * rare + 1));
  for (auto& c : counts) c = 1 + rng() % 3;
  counts[std::size_t(rare)] = 1000000;
  return detail::FreqModel::from_counts(counts, true);
}

// Regression: decoding with calibrated tables was about 20% slower than with
// a stream's own tables because find() stepped through crowded buckets one
// symbol at a time; the binary search that replaced the steps must find the
// same symbol for every value.
TEST(SimdDecode, RegressionCrowdedBucketsFindTheSymbolOfEveryValue) {
  for (int rare : {40, 150, 400}) {
    const auto m = crowded_model(rare, unsigned(rare));
    detail::DecodeTable t;
    t.build(m);
    int s = 0;
    for (std::uint32_t v = 0; v < detail::kProbTotal; ++v) {
      while (m.cdf[std::size_t(s) + 1] <= v) ++s;
      ASSERT_EQ(t.find(v), s) << "v = " << v << ", " << rare << " rare symbols per side";
    }
  }
}

// The AVX2 lanes' version of the same search: 8 raw lanes coding mostly rare
// symbols of crowded models decode to exactly the coded values.
TEST(SimdDecode, RegressionCrowdedBucketsDecodeInTheAvx2Lanes) {
  if (!simd_decode_enabled()) GTEST_SKIP() << "this CPU has no AVX2 (or KVSCOPE_NO_SIMD is set)";
  namespace cg = detail::cachegen;
  constexpr int kLanes = 8, kTokens = 300, M = 150;
  std::vector<detail::FreqModel> models;
  for (int j = 0; j < kLanes; ++j) models.push_back(crowded_model(M, unsigned(j + 1)));
  std::mt19937 rng(11);
  std::vector<int> symbols(std::size_t(kLanes) * kTokens);
  std::vector<std::uint8_t> streams;
  cg::Block8 b;
  for (int j = 0; j < kLanes; ++j) {
    b.begin[j] = std::uint32_t(streams.size());
    std::vector<std::uint8_t> lane;
    detail::RangeEncoder enc(lane);
    for (int t = 0; t < kTokens; ++t) {
      // Half the symbols from the crowded tails, so every lane searches often.
      const int s = rng() % 2 ? M : int(rng() % std::uint32_t(2 * M + 1));
      symbols[std::size_t(t) * kLanes + j] = s;
      enc.encode(models[j].cdf[std::size_t(s)], models[j].freq(s));
    }
    enc.finish();
    streams.insert(streams.end(), lane.begin(), lane.end());
    b.end[j] = std::uint32_t(streams.size());
    b.anchor[j] = b.delta[j] = &models[std::size_t(j)];
    b.raw[j] = true;
  }
  streams.resize(streams.size() + 4, 0);
  const float step = 0.5f;
  std::vector<float> out(std::size_t(kLanes) * kTokens, -1.0f);
  b.streams = streams.data();
  b.step = &step;
  b.stride = 0;
  b.tokens = kTokens;
  b.group_size = 1;
  b.M = M;
  b.out = out.data();
  b.out_stride = kLanes;
  ASSERT_TRUE(cg::decode_block_avx2(b));
  for (std::size_t i = 0; i < out.size(); ++i)
    ASSERT_EQ(out[i], float(symbols[i] - M) * step) << "token " << i / kLanes << ", lane " << i % kLanes;
}

}  // namespace
}  // namespace kvscope::codec
