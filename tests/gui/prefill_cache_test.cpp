// SPDX-License-Identifier: GPL-3.0-or-later
// Prefills kept on disk between launches (the launch-to-first-plot target):
// stored and restored bit for bit, keyed by model file and text, bounded.
#include "prefill_cache.h"

#include <gtest/gtest.h>

#include <QFile>
#include <QTemporaryDir>
#include <cmath>

namespace kvscope::gui {
namespace {

kv::KVCache smallCache(int tokens, float seed) {
  kv::KVCache cache(kv::CacheShape{2, 1, tokens, 4});
  auto data = cache.data();
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::sin(seed + 0.37f * float(i));
  for (int t = 0; t < tokens; ++t) cache.info.token_ids.push_back(100 + t);
  cache.info.model_name = "tiny";
  return cache;
}

TEST(PrefillCache, StoresAndRestoresBitForBit) {
  QTemporaryDir dir;
  const QString model = dir.filePath(QStringLiteral("model.gguf"));
  QFile f(model);
  ASSERT_TRUE(f.open(QIODevice::WriteOnly));
  f.write("GGUF not really");
  f.close();
  const QString key = PrefillCache::key(model, QStringLiteral("some context"));
  ASSERT_FALSE(key.isEmpty());
  EXPECT_NE(key, PrefillCache::key(model, QStringLiteral("another context")));
  EXPECT_TRUE(PrefillCache::key(dir.filePath(QStringLiteral("missing.gguf")), QStringLiteral("x")).isEmpty());

  PrefillCache cache(dir.filePath(QStringLiteral("prefill")).toStdString());
  EXPECT_FALSE(cache.contains(key));
  auto original = std::make_shared<const kv::KVCache>(smallCache(5, 0.5f));
  cache.store(key, {original, 123.5, QStringLiteral("a note"), nullptr});
  ASSERT_TRUE(cache.contains(key));
  const auto back = cache.load(key);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->cache->shape(), original->shape());
  EXPECT_EQ(kv::max_abs_difference(*back->cache, *original), 0.0f);
  EXPECT_EQ(back->cache->info.token_ids, original->info.token_ids);
  EXPECT_DOUBLE_EQ(back->tokens_per_s, 123.5);
  EXPECT_EQ(back->note, QStringLiteral("a note"));
}

// The channel weights the prefill measured come back with the cache
// (calibration needs them), exactly; an entry without them has none.
TEST(PrefillCache, KeepsTheMeasuredChannelWeights) {
  QTemporaryDir dir;
  const std::filesystem::path folder = dir.filePath(QStringLiteral("prefill")).toStdString();
  PrefillCache cache(folder);
  auto c = std::make_shared<const kv::KVCache>(smallCache(3, 2.0f));
  auto weights = std::make_shared<MeasuredChannelWeights>();
  for (int i = 0; i < 8; ++i) {
    weights->key.push_back(std::exp(0.7f * float(i)) / 3.0f);
    weights->value.push_back(1.0f + float(i) / 7.0f);
  }
  cache.store(QStringLiteral("with"), {c, 1, {}, weights});
  cache.store(QStringLiteral("without"), {c, 1, {}, nullptr});
  const auto with = cache.load(QStringLiteral("with"));
  ASSERT_TRUE(with);
  ASSERT_TRUE(with->weights);
  EXPECT_EQ(with->weights->key, weights->key);
  EXPECT_EQ(with->weights->value, weights->value);
  const auto without = cache.load(QStringLiteral("without"));
  ASSERT_TRUE(without);
  EXPECT_FALSE(without->weights);
  // Damaged weights: the entry reads as absent (prefilled again), not as one without them.
  QFile side(QString::fromStdString((folder / "with.json").string()));
  ASSERT_TRUE(side.open(QIODevice::ReadOnly));
  QByteArray json = side.readAll();
  side.close();
  const QByteArray key_field = QByteArrayLiteral("\"key_weights\": \"");
  const auto at = json.indexOf(key_field);
  ASSERT_GE(at, 0) << json.toStdString();
  json.insert(at + key_field.size(), "#");
  ASSERT_TRUE(side.open(QIODevice::WriteOnly | QIODevice::Truncate));
  side.write(json);
  side.close();
  EXPECT_FALSE(cache.load(QStringLiteral("with")));
}

TEST(PrefillCache, KeepsTheNewestEntriesAndDropsDamagedOnes) {
  QTemporaryDir dir;
  const std::filesystem::path folder = dir.filePath(QStringLiteral("prefill")).toStdString();
  PrefillCache cache(folder);
  auto c = std::make_shared<const kv::KVCache>(smallCache(3, 1.0f));
  for (int i = 0; i < PrefillCache::kMaxEntries + 3; ++i)
    cache.store(QStringLiteral("key%1").arg(i), {c, 1, {}, nullptr});
  int kept = 0;
  for (int i = 0; i < PrefillCache::kMaxEntries + 3; ++i)
    kept += cache.contains(QStringLiteral("key%1").arg(i));
  EXPECT_EQ(kept, PrefillCache::kMaxEntries);
  // A damaged entry reads as absent and is removed.
  const QString last = QStringLiteral("key%1").arg(PrefillCache::kMaxEntries + 2);
  ASSERT_TRUE(cache.contains(last));
  QFile damaged(QString::fromStdString((folder / (last.toStdString() + ".safetensors")).string()));
  ASSERT_TRUE(damaged.open(QIODevice::WriteOnly | QIODevice::Truncate));
  damaged.write("garbage");
  damaged.close();
  EXPECT_FALSE(cache.load(last));
  EXPECT_FALSE(cache.contains(last));
}

}  // namespace
}  // namespace kvscope::gui
