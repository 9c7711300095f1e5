// SPDX-License-Identifier: GPL-3.0-or-later
#include "prefill_cache.h"

#include <QCryptographicHash>
#include <QDateTime>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/version.h"
#include "kvscope/io/raw_cache.h"

namespace kvscope::gui {

namespace fs = std::filesystem;

namespace {

// Floats in the side file: base64 of their little-endian bytes (exact, and
// shorter than decimal text).
QString floatsToBase64(const std::vector<float>& v) {
  static_assert(std::endian::native == std::endian::little, "the side file holds little-endian floats");
  return QString::fromLatin1(
      QByteArray(reinterpret_cast<const char*>(v.data()), qsizetype(v.size() * sizeof(float))).toBase64());
}

// The floats of floatsToBase64(); Error(Format) when the text is not that.
std::vector<float> floatsFromBase64(const QJsonValue& value) {
  const auto result =
      QByteArray::fromBase64Encoding(value.toString().toLatin1(), QByteArray::AbortOnBase64DecodingErrors);
  const QByteArray& bytes = *result;
  if (!result || bytes.size() % qsizetype(sizeof(float)) != 0)
    throw Error(ErrorCode::Format, "prefill cache: bad channel weights");
  std::vector<float> v(std::size_t(bytes.size()) / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), bytes.constData(), std::size_t(bytes.size()));
  return v;
}

}  // namespace

fs::path PrefillCache::defaultFolder() {
  return model_dir().parent_path() / "prefill";
}

PrefillCache::PrefillCache(fs::path folder) : folder_(std::move(folder)) {}

QString PrefillCache::key(const QString& model_path, const QString& text) {
  const QFileInfo model(model_path);
  if (!model.exists()) return {};
  QCryptographicHash h(QCryptographicHash::Sha256);
  // Another KVScope version may fill the cache differently (new CacheInfo
  // fields): its entries are not reused.
  // 2: entries hold the prefill's channel weights (version 1 ones do not, and
  // would calibrate without them).
  h.addData(QByteArrayLiteral("kvscope prefill cache 2, "));
  h.addData(QByteArray(kvscope::kVersion));
  h.addData(model.canonicalFilePath().toUtf8());
  h.addData(QByteArray::number(model.size()));
  h.addData(QByteArray::number(model.lastModified().toMSecsSinceEpoch()));
  h.addData(QByteArrayLiteral("\n"));
  h.addData(text.toUtf8());
  return QString::fromLatin1(h.result().toHex().left(32));
}

bool PrefillCache::contains(const QString& key) const {
  std::error_code ec;
  return !key.isEmpty() && fs::exists(folder_ / (key.toStdString() + ".safetensors"), ec) &&
         fs::exists(folder_ / (key.toStdString() + ".json"), ec);
}

std::optional<PrefillCache::Entry> PrefillCache::load(const QString& key) const {
  if (!contains(key)) return std::nullopt;
  const fs::path tensors = folder_ / (key.toStdString() + ".safetensors");
  const fs::path side = folder_ / (key.toStdString() + ".json");
  try {
    Entry e;
    const std::string json = read_file(side);
    const QJsonObject o = QJsonDocument::fromJson(QByteArray::fromStdString(json)).object();
    e.tokens_per_s = o.value(QStringLiteral("tokens_per_s")).toDouble();
    e.note = o.value(QStringLiteral("note")).toString();
    if (o.contains(QStringLiteral("key_weights"))) {
      auto w = std::make_shared<MeasuredChannelWeights>();
      w->key = floatsFromBase64(o.value(QStringLiteral("key_weights")));
      w->value = floatsFromBase64(o.value(QStringLiteral("value_weights")));
      e.weights = std::move(w);
    }
    e.cache = std::make_shared<const kv::KVCache>(io::load_cache(tensors));
    // Touch: the newest entries are the ones kept.
    std::error_code ec;
    fs::last_write_time(side, fs::file_time_type::clock::now(), ec);
    return e;
  } catch (const Error&) {
    std::error_code ec;
    fs::remove(tensors, ec);
    fs::remove(side, ec);
    return std::nullopt;
  }
}

void PrefillCache::store(const QString& key, const Entry& entry) const {
  if (key.isEmpty() || !entry.cache) return;
  try {
    std::error_code ec;
    fs::create_directories(folder_, ec);
    // float32: the restored cache equals a fresh prefill bit for bit.
    io::save_cache(*entry.cache, folder_ / (key.toStdString() + ".safetensors"), io::RawDtype::F32);
    QJsonObject o;
    o[QStringLiteral("tokens_per_s")] = entry.tokens_per_s;
    o[QStringLiteral("note")] = entry.note;
    if (entry.weights) {
      o[QStringLiteral("key_weights")] = floatsToBase64(entry.weights->key);
      o[QStringLiteral("value_weights")] = floatsToBase64(entry.weights->value);
    }
    const QByteArray json = QJsonDocument(o).toJson();
    write_file_atomically(folder_ / (key.toStdString() + ".json"), json.constData(),
                          std::size_t(json.size()));
    // Stamped with the clock's full resolution (a file's own mtime is only as
    // fine as the kernel tick), so entries stored in quick succession still
    // order from newest to oldest.
    fs::last_write_time(folder_ / (key.toStdString() + ".json"), fs::file_time_type::clock::now(), ec);
    // Keep the newest kMaxEntries (by their side file's time).
    std::vector<std::pair<fs::file_time_type, fs::path>> sides;
    for (const auto& f : fs::directory_iterator(folder_, ec))
      if (f.path().extension() == ".json") sides.emplace_back(f.last_write_time(ec), f.path());
    std::sort(sides.begin(), sides.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (std::size_t i = kMaxEntries; i < sides.size(); ++i) {
      fs::path t = sides[i].second;
      fs::remove(sides[i].second, ec);
      fs::remove(t.replace_extension(".safetensors"), ec);
    }
  } catch (const Error&) {
  }
}

}  // namespace kvscope::gui
