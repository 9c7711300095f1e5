// SPDX-License-Identifier: GPL-3.0-or-later
#include "session.h"

namespace kvscope::gui {

#if KVSCOPE_GUI_HAVE_MODEL
void Session::setModel(std::shared_ptr<const model::Model> model, const QString& path) {
  model_ = std::move(model);
  has_model_ = model_ != nullptr;
  model_path_ = path;
  model_name_ = model_ ? QString::fromStdString(model_->config().name) : QString();
  emit modelChanged();
}
#endif

void Session::setCache(std::shared_ptr<const kv::KVCache> cache, const QString& source,
                       std::shared_ptr<const MeasuredChannelWeights> weights) {
  cache_ = std::move(cache);
  channel_weights_ = std::move(weights);
  cache_source_ = source;
  prefill_rate_ = 0;  // the caller that prefilled sets it after
  emit cacheChanged();
}

void Session::setContext(const QString& name, const QString& text) {
  context_name_ = name;
  context_text_ = text;
  emit contextChanged();
}

}  // namespace kvscope::gui
