// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QString>
#include <filesystem>
#include <memory>
#include <optional>

#include "kvscope/kv/kv_cache.h"
#include "measured_channel_weights.h"

namespace kvscope::gui {

/// Prefilled KV caches kept on disk between launches, so opening the app on
/// a context it has seen shows its plots without rerunning the model (the
/// prefill is the slowest stage by far: seconds, against milliseconds for
/// everything drawn from the cache). Entries live in
/// `folder`/<key>.safetensors (io::save_cache) with a small <key>.json
/// beside it (prefill rate, truncation note, the channel weights the prefill
/// measured); the newest `kMaxEntries` are kept. A damaged entry is treated
/// as absent and removed.
class PrefillCache {
 public:
  static constexpr int kMaxEntries = 6;

  /// Default folder: next to the model folder (…/kvscope/prefill).
  static std::filesystem::path defaultFolder();

  explicit PrefillCache(std::filesystem::path folder = defaultFolder());

  /// Identifies a prefill: this KVScope version, the model file (path, size,
  /// modification time) and the context text. Empty when the model file
  /// cannot be read.
  static QString key(const QString& model_path, const QString& text);

  struct Entry {
    std::shared_ptr<const kv::KVCache> cache;
    double tokens_per_s = 0;  ///< the prefill's measured rate
    QString note;             ///< e.g. truncation to the context limit
    /// What the prefill measured for calibration (null: not measured).
    std::shared_ptr<const MeasuredChannelWeights> weights;
  };
  /// The stored entry for `key`, or nullopt (absent or unreadable).
  std::optional<Entry> load(const QString& key) const;
  bool contains(const QString& key) const;
  /// Stores an entry (atomically) and drops the oldest beyond kMaxEntries.
  /// Errors are swallowed: the cache is an optimisation only.
  void store(const QString& key, const Entry& entry) const;

 private:
  std::filesystem::path folder_;
};

}  // namespace kvscope::gui
