// SPDX-License-Identifier: Apache-2.0
// The AVX2 cachegen decoder (core/codec/src/cachegen_block_avx2.cpp) must be
// bit-identical to the scalar decoder: same values on valid streams, same
// verdict and values on tampered ones.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace kvscope::codec
