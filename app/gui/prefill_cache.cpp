// SPDX-License-Identifier: GPL-3.0-or-later
#include "prefill_cache.h"

#include <QCryptographicHash>
#include <QDateTime>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <algorithm>
#include <vector>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/version.h"
#include "kvscope/io/raw_cache.h"

namespace kvscope::gui {

namespace fs = std::filesystem;

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
  h.addData(QByteArrayLiteral("kvscope prefill cache 1, "));
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
