// SPDX-License-Identifier: Apache-2.0
// Statistics against values computed independently with numpy
// (tests/kv/make_stats_golden.py -> tests/kv/data/stats_golden.json) and a
// few hand-checkable cases.
#include "kvscope/kv/stats.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvscope/common/error.h"

namespace kvscope::kv {
namespace {

nlohmann::json load_golden() {
  std::ifstream f(std::string(KVSCOPE_SOURCE_DIR) + "/tests/kv/data/stats_golden.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

KVCache cache_from(const nlohmann::json& g) {
  CacheShape s{g["shape"]["layers"], g["shape"]["kv_heads"], g["shape"]["tokens"], g["shape"]["head_dim"]};
  KVCache c(s);
  const auto& v = g["values"];
  EXPECT_EQ(v.size(), c.data().size());
  for (std::size_t i = 0; i < v.size(); ++i) c.data()[i] = float(v[i].get<double>());
  return c;
}

void expect_moments(const Moments& m, const nlohmann::json& j, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(m.count, j["count"].get<std::uint64_t>());
  EXPECT_NEAR(m.mean, j["mean"].get<double>(), 1e-9);
  EXPECT_NEAR(m.std, j["std"].get<double>(), 1e-9);
  EXPECT_NEAR(m.min, j["min"].get<double>(), 1e-12);
  EXPECT_NEAR(m.max, j["max"].get<double>(), 1e-12);
  EXPECT_NEAR(m.kurtosis, j["kurtosis"].get<double>(), 1e-7);
}

TEST(KvStats, MatchesNumpyGolden) {
  const auto g = load_golden();
  const KVCache cache = cache_from(g);
  StatsConfig cfg;
  cfg.histogram_bins = g["config"]["histogram_bins"];
  cfg.entropy_bins = g["config"]["entropy_bins"];
  cfg.group_size = g["config"]["group_size"];
  cfg.outlier_factor = g["config"]["outlier_factor"];
  cfg.threads = 2;
  const CacheStats st = compute_stats(cache, cfg);
  ASSERT_EQ(st.tensors.size(), g["tensors"].size());
  for (std::size_t ti = 0; ti < st.tensors.size(); ++ti) {
    const auto& ts = st.tensors[ti];
    const auto& gt = g["tensors"][ti];
    SCOPED_TRACE("tensor " + std::to_string(ti));
    EXPECT_EQ(ts.layer, gt["layer"].get<int>());
    EXPECT_EQ(int(ts.kind), gt["kind"].get<int>());
    for (Series se : kSeries) {
      const std::string n(to_string(se));
      const int i = int(se);
      expect_moments(ts.moments[i], gt["moments"][n], "tensor " + n);
      EXPECT_EQ(ts.histograms[i].counts, gt["histograms"][n].get<std::vector<std::uint64_t>>()) << n;
      EXPECT_NEAR(ts.entropy_bits[i], gt["entropy_bits"][n].get<double>(), 1e-9) << n;
    }
    EXPECT_NEAR(ts.adjacent_correlation, gt["adjacent_correlation"].get<double>(), 1e-9);
    EXPECT_NEAR(ts.median_channel_absmax, gt["median_channel_absmax"].get<double>(), 1e-12);
    EXPECT_EQ(ts.outlier_channels, gt["outlier_channels"].get<std::vector<int>>());
    ASSERT_EQ(ts.channels.size(), gt["channels"].size());
    for (std::size_t c = 0; c < ts.channels.size(); ++c) {
      const auto& ch = ts.channels[c];
      const auto& gc = gt["channels"][c];
      SCOPED_TRACE("channel " + std::to_string(c));
      for (Series se : kSeries) {
        const std::string n(to_string(se));
        const int i = int(se);
        expect_moments(ch.moments[i], gc["moments"][n], "channel " + n);
        EXPECT_NEAR(ch.entropy_bits[i], gc["entropy_bits"][n].get<double>(), 1e-9) << n;
        EXPECT_EQ(ch.histograms[i].counts, gc["histograms"][n].get<std::vector<std::uint64_t>>()) << n;
      }
      EXPECT_NEAR(ch.adjacent_correlation, gc["adjacent_correlation"].get<double>(), 1e-9);
    }
  }
}

TEST(KvStats, GoldenCoversTheSpecialCases) {
  // Guards the golden file itself: an outlier channel and an all-zero channel exist.
  const auto g = load_golden();
  EXPECT_EQ(g["tensors"][2]["outlier_channels"], nlohmann::json::array({6}));
  EXPECT_EQ(g["tensors"][1]["channels"][1]["entropy_bits"]["raw"].get<double>(), 0.0);
}

TEST(KvStats, HandComputedTinyCache) {
  // One layer, one head, one dim, tokens 0,1,3,6,10 (keys); values all 2.
  KVCache c(CacheShape{1, 1, 5, 1});
  const float k[] = {0, 1, 3, 6, 10};
  for (int t = 0; t < 5; ++t) {
    c.at(0, Kind::Key, 0, t, 0) = k[t];
    c.at(0, Kind::Value, 0, t, 0) = 2;
  }
  StatsConfig cfg;
  cfg.group_size = 2;  // anchors 0, 2, 4 -> anchor deltas: 1-0, 6-3
  cfg.histogram_bins = 5;
  cfg.entropy_bins = 22;  // M = 10, step = 10/10 = 1
  const auto st = compute_stats(c, cfg);
  const auto& key = st.tensor(0, Kind::Key);
  EXPECT_DOUBLE_EQ(key.moments[0].mean, 4.0);
  EXPECT_DOUBLE_EQ(key.moments[0].std, std::sqrt(13.2));  // (16+9+1+4+36)/5
  EXPECT_EQ(key.moments[1].count, 2u);
  EXPECT_DOUBLE_EQ(key.moments[1].mean, 2.0);  // (1 + 3) / 2
  EXPECT_EQ(key.moments[2].count, 4u);
  EXPECT_DOUBLE_EQ(key.moments[2].mean, 2.5);  // 1,2,3,4
  EXPECT_DOUBLE_EQ(key.moments[2].min, 1.0);
  EXPECT_DOUBLE_EQ(key.entropy_bits[0], std::log2(5.0));                             // five distinct symbols
  EXPECT_DOUBLE_EQ(key.entropy_bits[2], 2.0);                                        // four distinct deltas
  EXPECT_EQ(key.histograms[0].counts, (std::vector<std::uint64_t>{2, 1, 0, 1, 1}));  // bins of width 2
  const auto& val = st.tensor(0, Kind::Value);
  EXPECT_DOUBLE_EQ(val.moments[0].std, 0.0);
  EXPECT_DOUBLE_EQ(val.moments[0].kurtosis, 0.0);
  EXPECT_DOUBLE_EQ(val.entropy_bits[0], 0.0);
  EXPECT_DOUBLE_EQ(val.adjacent_correlation, 0.0);
  EXPECT_EQ(val.histograms[0].counts[0], 5u);
}

TEST(KvStats, RejectsBadConfig) {
  KVCache c(CacheShape{1, 1, 4, 2});
  StatsConfig cfg;
  cfg.group_size = 0;
  EXPECT_THROW(compute_stats(c, cfg), Error);
  cfg = {};
  cfg.entropy_bins = 3;
  EXPECT_THROW(compute_stats(c, cfg), Error);
  cfg = {};
  cfg.histogram_bins = 0;
  EXPECT_THROW(compute_stats(c, cfg), Error);
  cfg = {};
  cfg.outlier_factor = -1;
  EXPECT_THROW(compute_stats(c, cfg), Error);
}

TEST(KvStats, EmptyCachesAreFine) {
  EXPECT_TRUE(compute_stats(KVCache(CacheShape{0, 3, 10, 4})).tensors.empty());
  const auto st = compute_stats(KVCache(CacheShape{2, 3, 0, 4}));
  ASSERT_EQ(st.tensors.size(), 4u);
  EXPECT_EQ(st.tensors[0].moments[0].count, 0u);
  EXPECT_TRUE(st.tensors[0].outlier_channels.empty());
}

TEST(KvStats, ProgressCanCancel) {
  KVCache c(CacheShape{4, 1, 8, 2});
  StatsConfig cfg;
  std::atomic<int> calls{0};
  cfg.progress = [&](double, std::string_view) { return ++calls < 2; };
  try {
    compute_stats(c, cfg);
    FAIL() << "expected Cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Cancelled);
  }
}

TEST(KvStats, SmoothSignalHasLowerDeltaEntropy) {
  // Token locality: a slowly varying channel has far lower delta entropy than raw entropy.
  KVCache c(CacheShape{1, 1, 400, 1});
  for (int t = 0; t < 400; ++t) c.at(0, Kind::Key, 0, t, 0) = float(std::sin(t * 0.01));
  const auto st = compute_stats(c);
  const auto& k = st.tensor(0, Kind::Key);
  EXPECT_LT(k.entropy_bits[2], 0.5 * k.entropy_bits[0]);
  EXPECT_LT(k.entropy_bits[1], k.entropy_bits[0]);
  EXPECT_GT(k.adjacent_correlation, 0.99);
}

}  // namespace
}  // namespace kvscope::kv
