// SPDX-License-Identifier: Apache-2.0
#include "kvscope/kv/kv_cache.h"

#include <gtest/gtest.h>

#include "kvscope/common/error.h"

namespace kvscope::kv {
namespace {

KVCache numbered(const CacheShape& s) {
  KVCache c(s);
  for (std::size_t i = 0; i < c.data().size(); ++i) c.data()[i] = float(i);
  c.info.token_ids.resize(s.tokens);
  for (int t = 0; t < s.tokens; ++t) c.info.token_ids[t] = 100 + t;
  return c;
}

TEST(KVCache, LayoutIsLayerKindHeadTokenDim) {
  KVCache c = numbered({2, 3, 5, 4});
  EXPECT_EQ(c.shape().channels(), 12);
  EXPECT_EQ(c.data().size(), 2u * 2 * 3 * 5 * 4);
  EXPECT_EQ(c.at(0, Kind::Key, 0, 0, 1), 1.f);
  EXPECT_EQ(c.at(0, Kind::Key, 0, 1, 0), 4.f);
  EXPECT_EQ(c.at(0, Kind::Key, 1, 0, 0), 20.f);
  EXPECT_EQ(c.at(0, Kind::Value, 0, 0, 0), 60.f);
  EXPECT_EQ(c.at(1, Kind::Key, 0, 0, 0), 120.f);
  EXPECT_EQ(c.channel_value(0, Kind::Key, 2, 5), c.at(0, Kind::Key, 1, 2, 1));
  EXPECT_EQ(c.tensor(1, Kind::Value)[0], 180.f);
}

TEST(KVCache, SliceThenConcatRestores) {
  KVCache c = numbered({3, 2, 10, 4});
  std::vector<KVCache> parts = {c.slice_tokens(0, 3), c.slice_tokens(3, 4), c.slice_tokens(4, 10)};
  EXPECT_EQ(parts[1].info.token_ids, std::vector<std::int32_t>{103});
  KVCache joined = KVCache::concat_tokens(parts);
  EXPECT_EQ(joined.shape(), c.shape());
  EXPECT_EQ(max_abs_difference(joined, c), 0.f);
  EXPECT_EQ(joined.info.token_ids, c.info.token_ids);
}

TEST(KVCache, RejectsBadSlices) {
  KVCache c = numbered({1, 1, 4, 2});
  EXPECT_THROW(c.slice_tokens(3, 2), Error);
  EXPECT_THROW(c.slice_tokens(0, 5), Error);
  EXPECT_THROW(KVCache(CacheShape{1, -1, 2, 2}), Error);
}

TEST(KVCache, ConcatRejectsMismatchedShapes) {
  std::vector<KVCache> parts = {KVCache({1, 1, 2, 2}), KVCache({1, 2, 2, 2})};
  EXPECT_THROW(KVCache::concat_tokens(parts), Error);
}

TEST(KVCache, MaxAbsDifference) {
  KVCache a({1, 1, 2, 2}), b({1, 1, 2, 2});
  b.at(0, Kind::Value, 0, 1, 1) = -0.5f;
  EXPECT_EQ(max_abs_difference(a, b), 0.5f);
}

}  // namespace
}  // namespace kvscope::kv
