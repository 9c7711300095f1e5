// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QObject>
#include <QString>
#include <memory>
#include <vector>

#include "kvscope/kv/kv_cache.h"
#include "measured_channel_weights.h"

#if KVSCOPE_GUI_HAVE_MODEL
#include "kvscope/model/model.h"  // torch-free public header (pimpl)
#endif

namespace kvscope::gui {

/// What the panels share: the loaded model, the context and its KV cache.
/// Lives on the GUI thread; workers get immutable shared_ptr snapshots, so a
/// new model or cache never pulls data from under a running job.
class Session : public QObject {
  Q_OBJECT

 public:
  using QObject::QObject;

#if KVSCOPE_GUI_HAVE_MODEL
  std::shared_ptr<const model::Model> model() const {
    return model_;
  }
  void setModel(std::shared_ptr<const model::Model> model, const QString& path);
#endif
  bool hasModel() const {
    return has_model_;
  }
  QString modelPath() const {
    return model_path_;
  }
  QString modelName() const {
    return model_name_;
  }

  std::shared_ptr<const kv::KVCache> cache() const {
    return cache_;
  }
  /// `source` describes where the cache came from (context name or file);
  /// `weights`: the channel weights its prefill measured (null for a cache
  /// that was not prefilled here, e.g. one opened from a file).
  void setCache(std::shared_ptr<const kv::KVCache> cache, const QString& source,
                std::shared_ptr<const MeasuredChannelWeights> weights = nullptr);
  QString cacheSource() const {
    return cache_source_;
  }
  /// The channel weights measured with the current cache; null when none were.
  std::shared_ptr<const MeasuredChannelWeights> channelWeights() const {
    return channel_weights_;
  }
  /// Tokens per second this machine prefilled the current cache at (the
  /// recompute rate a text chunk is charged at); 0 when unknown (a cache
  /// loaded from a file).
  double prefillTokensPerSecond() const {
    return prefill_rate_;
  }
  void setPrefillTokensPerSecond(double rate) {
    prefill_rate_ = rate;
  }

  /// The context text last prefilled (or to prefill) and its label.
  QString contextText() const {
    return context_text_;
  }
  QString contextName() const {
    return context_name_;
  }
  void setContext(const QString& name, const QString& text);

 signals:
  void modelChanged();
  void cacheChanged();
  void contextChanged();

 private:
#if KVSCOPE_GUI_HAVE_MODEL
  std::shared_ptr<const model::Model> model_;
#endif
  bool has_model_ = false;
  QString model_path_, model_name_;
  std::shared_ptr<const kv::KVCache> cache_;
  std::shared_ptr<const MeasuredChannelWeights> channel_weights_;
  QString cache_source_;
  double prefill_rate_ = 0;
  QString context_text_, context_name_;
};

}  // namespace kvscope::gui
