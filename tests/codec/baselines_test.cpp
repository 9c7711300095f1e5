// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>

#include "kvscope/codec/bitstream.h"
#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

TEST(CachegenLmcache, ErrorWithinHalfPerTokenStepAndTablesAreShipped) {
  const auto cache = synthetic_cache({4, 2, 50, 8}, 31);
  const auto& sh = cache.shape();
  const auto r = find_codec("cachegen-lmcache").encode(cache, {{"chunk_tokens", "16"}});
  const auto d = decode(r.bytes);
  const auto info = inspect_stream(r.bytes);
  EXPECT_EQ(info.params.at("key_layer_splits"), "1");  // 4 layers * 10/32
  for (int l = 0; l < sh.layers; ++l)
    for (auto k : kv::kKinds) {
      const int M = (l < 1 ? 32 : 16) / 2 - 1;
      for (int t = 0; t < sh.tokens; ++t) {
        float amax = 0;
        for (int c = 0; c < sh.channels(); ++c)
          amax = std::max(amax, std::fabs(cache.channel_value(l, k, t, c)));
        const float step = test::int_step(amax, M);
        for (int c = 0; c < sh.channels(); ++c)
          ASSERT_LE(std::fabs(cache.channel_value(l, k, t, c) - d.channel_value(l, k, t, c)),
                    0.5f * step * (1 + 1e-5f));
      }
    }
  int tables = 0;
  for (const auto& s : info.sections) tables += s.kind == SectionKind::Table;
  EXPECT_EQ(tables, sh.layers * 2);
  EXPECT_GT(r.size.table_bytes, 0u);
  const double entropy_bytes = r.size.entropy_bits_per_element * double(r.size.elements) / 8;
  EXPECT_LE(double(r.size.payload_bytes), 1.05 * entropy_bytes + 8.0 * sh.channels() * sh.layers * 2 * 4);
}

TEST(Kivi2, ErrorWithinHalfGroupStepAndRecentTokensExact) {
  const auto cache = synthetic_cache({2, 2, 90, 8}, 41);
  const auto& sh = cache.shape();
  const int G = 8, R = 20;
  const auto d = decode(find_codec("kivi2")
                            .encode(cache, {{"group_size", std::to_string(G)},
                                            {"residual_tokens", std::to_string(R)},
                                            {"chunk_tokens", "32"}})
                            .bytes);
  float worst_rel = 0;
  for (int l = 0; l < sh.layers; ++l)
    for (auto k : kv::kKinds)
      for (int t = 0; t < sh.tokens; ++t)
        for (int c = 0; c < sh.channels(); ++c) {
          const float x = cache.channel_value(l, k, t, c), y = d.channel_value(l, k, t, c);
          if (t >= sh.tokens - R) {
            ASSERT_EQ(y, round_to_half(x)) << "recent tokens stay fp16";
            continue;
          }
          // The group's range bounds the step: step <= (max-min)/3 rounded up twice.
          float lo = INFINITY, hi = -INFINITY;
          if (k == kv::Kind::Key) {
            const int t0 = (t % 32) / G * G + t / 32 * 32;
            const int t1 = std::min({t0 + G, t / 32 * 32 + 32, sh.tokens - R});
            for (int u = t0; u < t1; ++u)
              lo = std::min(lo, cache.channel_value(l, k, u, c)),
              hi = std::max(hi, cache.channel_value(l, k, u, c));
          } else {
            const int c0 = c / G * G;
            for (int u = c0; u < std::min(c0 + G, sh.channels()); ++u)
              lo = std::min(lo, cache.channel_value(l, k, t, u)),
              hi = std::max(hi, cache.channel_value(l, k, t, u));
          }
          const float step = (hi - lo) / 3;
          ASSERT_LE(std::fabs(x - y), 0.5f * step * 1.002f + 1e-6f)
              << "layer " << l << " token " << t << " channel " << c;
          worst_rel = std::max(worst_rel, std::fabs(x - y));
        }
  EXPECT_GT(worst_rel, 0);
}

TEST(Zstd, MatchesInt8ValuesAndIsSmaller) {
  bool have = false;
  for (const Codec* c : all_codecs()) have |= c->name() == "zstd";
  if (!have) GTEST_SKIP() << "built without zstd";
  const auto cache = synthetic_cache({3, 2, 120, 16}, 51);
  const auto z = find_codec("zstd").encode(cache, {{"level", "5"}});
  const auto i8 = find_codec("int8").encode(cache, {});
  EXPECT_EQ(test::hash_values(decode(z.bytes).data()), test::hash_values(decode(i8.bytes).data()));
  EXPECT_LT(z.size.encoded_bytes, i8.size.encoded_bytes);
  EXPECT_THROW(find_codec("zstd").encode(cache, {{"level", "99"}}), Error);
}

}  // namespace
}  // namespace kvscope::codec
