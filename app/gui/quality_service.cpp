// SPDX-License-Identifier: GPL-3.0-or-later
#include "quality_service.h"

#include <QElapsedTimer>
#include <cmath>

#include "job_runner.h"
#include "kvscope/common/error.h"
#include "session.h"

namespace kvscope::gui {

// The reference, shared by the three workers: the first job that needs it
// computes it (holding the lock), the others wait for it on their own threads.
struct QualityReferenceSlot {
  std::mutex mutex;
  std::shared_ptr<const kv::KVCache> for_cache;
  std::shared_ptr<const eval::Reference> reference;
};

namespace {

std::string configKey(const codec::CodecConfig& c) {
  std::string key = c.codec;
  for (const auto& [k, v] : c.params) key += ";" + k + "=" + v;
  return key;
}

#if KVSCOPE_GUI_HAVE_MODEL
std::shared_ptr<const eval::Reference> referenceFor(QualityReferenceSlot& slot, const model::Model& model,
                                                    const std::shared_ptr<const kv::KVCache>& cache,
                                                    const std::string& label, eval::EvalConfig config,
                                                    const ProgressFn& progress) {
  std::lock_guard lock(slot.mutex);
  if (slot.for_cache == cache && slot.reference) return slot.reference;
  // Not cancelled by the job's own cancel (a quick succession of edits would
  // never let it finish): about a second, computed once per cache.
  (void)progress;
  config.progress = nullptr;
  auto ref =
      std::make_shared<const eval::Reference>(eval::reference_from_cache(model, *cache, label, config));
  slot.for_cache = cache;
  slot.reference = ref;
  return ref;
}

// Scores a decoded cache of the whole context against the reference.
eval::QualityResult scoreDecoded(const model::Model& model, const eval::Reference& ref,
                                 const kv::KVCache& decoded) {
  const int n = int(ref.context_tokens.size());
  const kv::KVCache prefix = decoded.slice_tokens(0, n - 1);
  std::vector<std::int32_t> fed{ref.context_tokens.back()};
  fed.insert(fed.end(), ref.continuation_tokens.begin(), ref.continuation_tokens.end() - 1);
  const auto logits = model.continue_logits(prefix, fed);
  eval::QualityResult q;
  q.context = ref.label;
  q.context_tokens = n;
  q.continuation_tokens = int(ref.continuation_tokens.size());
  q.token_scores = eval::token_scores(ref.logits, logits, model.config().vocab, ref.continuation_tokens);
  const auto& s = q.token_scores;
  double kl = 0, nll = 0, top1 = 0;
  for (std::size_t i = 0; i < s.size(); ++i) kl += s.kl[i], nll += s.nll[i], top1 += s.top1[i];
  q.kl = kl / double(s.size());
  q.top1_agreement = top1 / double(s.size());
  q.ppl_ref = ref.ppl;
  q.ppl = std::exp(nll / double(s.size()));
  q.delta_ppl_pct = 100.0 * (q.ppl - q.ppl_ref) / q.ppl_ref;
  q.greedy_match = 1.0;
  q.max_abs_error = kv::max_abs_difference(ref.cache, prefix);
  q.intervals = eval::bootstrap_intervals(s);
  return q;
}
#endif

}  // namespace

QualityService::QualityService(Session* session, QObject* parent)
    : QObject(parent),
      session_(session),
      slot_(std::make_shared<QualityReferenceSlot>()),
      live_(std::make_unique<JobRunner>(QStringLiteral("quality"))),
      sweep_(std::make_unique<JobRunner>(QStringLiteral("rate-distortion"))),
      decoded_(std::make_unique<JobRunner>(QStringLiteral("delivered quality"))) {
  connect(session_, &Session::cacheChanged, this, [this] {
    debounce_.stop();
    live_->cancel();
    sweep_->cancel();
    decoded_->cancel();
    results_.clear();
    pending_decoded_.clear();
    emit reset();
  });
  debounce_.setSingleShot(true);
  debounce_.setInterval(kLiveDelayMs);
  connect(&debounce_, &QTimer::timeout, this, [this] { startLive(pending_live_); });
  connect(live_.get(), &JobRunner::failed, this,
          [this](const QString&, const QString& message) { emit liveFailed(message); });
  connect(sweep_.get(), &JobRunner::failed, this, [this] { emit sweepFinished(); });
  connect(decoded_.get(), &JobRunner::failed, this, [this] { pending_decoded_.clear(); });
  connect(sweep_.get(), &JobRunner::cancelled, this, [this] { emit sweepFinished(); });
}

QualityService::~QualityService() {
  live_.reset();
  sweep_.reset();
  decoded_.reset();
}

QString QualityService::unavailableReason() const {
#if KVSCOPE_GUI_HAVE_MODEL
  const auto model = session_->model();
  const auto cache = session_->cache();
  if (!cache || cache->empty()) return tr("no cache yet");
  if (!model) return tr("quality needs the model that made the cache: load it");
  const auto& c = model->config();
  const auto& s = cache->shape();
  if (c.layers != s.layers || c.kv_heads != s.kv_heads || c.head_dim != s.head_dim ||
      (!cache->info.model_name.empty() && cache->info.model_name != c.name))
    return tr("the cache is from another model (%1)").arg(QString::fromStdString(cache->info.model_name));
  if (int(cache->info.token_ids.size()) != s.tokens)
    return tr("the cache has no token ids, so the model cannot continue it");
  if (s.tokens < kScoredTokens + 64)
    return tr("the context is too short (%1 tokens): quality scores the last %2 and needs %3")
        .arg(s.tokens)
        .arg(kScoredTokens)
        .arg(kScoredTokens + 64);
  return {};
#else
  return tr("this build has no model runtime");
#endif
}

std::shared_ptr<const eval::Reference> QualityService::reference() const {
  std::unique_lock lock(slot_->mutex, std::try_to_lock);  // never wait on the GUI thread
  if (!lock.owns_lock()) return nullptr;
  return slot_->for_cache == session_->cache() ? slot_->reference : nullptr;
}

eval::EvalConfig QualityService::evalConfig() const {
  eval::EvalConfig config;
  config.continuation_tokens = kScoredTokens;
  config.greedy_tokens = 0;  // greedy match needs generation: too slow for every edit
  config.bootstrap_resamples = 1000;
  return config;
}

codec::CodecConfig QualityService::complete(const codec::CodecConfig& config, const kv::CacheShape* shape) {
  codec::CodecConfig c = config;
  try {
    for (const auto& spec : codec::find_codec(config.codec).params(shape))
      if (!c.params.count(spec.name)) c.params[spec.name] = spec.default_value;
  } catch (const Error&) {
  }
  return c;
}

std::optional<eval::QualityResult> QualityService::known(const codec::CodecConfig& config) const {
  const auto cache = session_->cache();
  const auto it = results_.find(configKey(complete(config, cache ? &cache->shape() : nullptr)));
  if (it == results_.end()) return std::nullopt;
  return it->second;
}

void QualityService::remember(const eval::QualityResult& result) {
  results_[configKey(result.config)] = result;
}

void QualityService::live(const codec::CodecConfig& config) {
  // Debounced: a burst of edits (a spin box held down) measures only the
  // last settings, and the encode each edit waits for keeps the cores.
  pending_live_ = config;
  live_->cancel();
  debounce_.start();
}

void QualityService::cancelLive() {
  debounce_.stop();
  live_->cancel();
}

void QualityService::startLive(const codec::CodecConfig& config) {
  const QString why = unavailableReason();
  if (!why.isEmpty()) {
    live_->cancel();
    emit liveFailed(why);
    return;
  }
  if (auto hit = known(config)) {
    live_->cancel();
    emit liveResult(*hit);
    return;
  }
#if KVSCOPE_GUI_HAVE_MODEL
  const auto model = session_->model();
  const auto cache = session_->cache();
  const std::string label = session_->contextName().toStdString();
  const eval::EvalConfig base = evalConfig();
  auto slot = slot_;
  emit liveStarted();
  live_->start(tr("Quality of %1").arg(QString::fromStdString(config.codec)),
               [=, this](const ProgressFn& progress) {
                 const auto ref = referenceFor(*slot, *model, cache, label, base, progress);
                 eval::EvalConfig c = base;
                 c.progress = progress;
                 eval::Evaluator evaluator(*model, c);
                 const eval::QualityResult r = evaluator.evaluate(*ref, config);
                 return std::function<void()>([this, r, cache] {
                   if (cache != session_->cache()) return;
                   remember(r);
                   emit liveResult(r);
                 });
               });
#endif
}

void QualityService::sweep(const std::vector<codec::CodecConfig>& configs, const QString& title) {
  const QString why = unavailableReason();
  if (!why.isEmpty()) {
    sweep_->cancel();
    emit sweepFinished();
    return;
  }
  // Known points come back at once; only the rest run.
  std::vector<codec::CodecConfig> todo;
  for (const auto& c : configs) {
    if (auto hit = known(c))
      emit sweepPoint(*hit);
    else
      todo.push_back(c);
  }
  if (todo.empty()) {
    emit sweepFinished();
    return;
  }
#if KVSCOPE_GUI_HAVE_MODEL
  const auto model = session_->model();
  const auto cache = session_->cache();
  const std::string label = session_->contextName().toStdString();
  const eval::EvalConfig base = evalConfig();
  auto slot = slot_;
  const quint64 gen = sweep_->generation() + 1;
  sweep_->start(title, [=, this](const ProgressFn& progress) {
    const auto ref = referenceFor(*slot, *model, cache, label, base, progress);
    for (std::size_t i = 0; i < todo.size(); ++i) {
      eval::EvalConfig c = base;
      c.progress = [&](double f, std::string_view stage) {
        return progress((double(i) + f) / double(todo.size()), stage);
      };
      eval::Evaluator evaluator(*model, c);
      eval::QualityResult r;
      try {
        r = evaluator.evaluate(*ref, todo[i]);
      } catch (const Error& e) {
        if (e.code() == ErrorCode::Cancelled) throw;
        continue;  // a sweep value the codec refuses: skip the point, keep the rest
      }
      QMetaObject::invokeMethod(
          this,
          [this, r, gen, cache] {
            if (gen != sweep_->generation() || cache != session_->cache()) return;
            remember(r);
            emit sweepPoint(r);
          },
          Qt::QueuedConnection);
    }
    return std::function<void()>([this] { emit sweepFinished(); });
  });
#endif
}

void QualityService::cancelSweep() {
  sweep_->cancel();
}

void QualityService::decoded(std::shared_ptr<const kv::KVCache> decoded_cache, const QString& label) {
  if (!unavailableReason().isEmpty() || !decoded_cache) return;
  if (decoded_cache->shape() != session_->cache()->shape()) return;
  // One after another on this runner's worker: a later call must not cancel
  // an earlier one (each policy's result is wanted), so they queue.
  pending_decoded_.push_back({decoded_cache, label});
  if (!decoded_->busy()) runNextDecoded();
}

void QualityService::runNextDecoded() {
#if KVSCOPE_GUI_HAVE_MODEL
  if (pending_decoded_.empty()) return;
  const std::shared_ptr<const kv::KVCache> d = pending_decoded_.front().first;
  const QString label = pending_decoded_.front().second;
  pending_decoded_.erase(pending_decoded_.begin());
  const auto model = session_->model();
  const auto cache = session_->cache();
  const std::string context = session_->contextName().toStdString();
  const eval::EvalConfig base = evalConfig();
  auto slot = slot_;
  decoded_->start(tr("Quality of what %1 delivered").arg(label), [=, this](const ProgressFn& progress) {
    const auto ref = referenceFor(*slot, *model, cache, context, base, progress);
    const eval::QualityResult r = scoreDecoded(*model, *ref, *d);
    return std::function<void()>([=, this] {
      if (cache == session_->cache()) emit decodedResult(label, r);
      runNextDecoded();
    });
  });
#endif
}

QString qualitySummary(const eval::QualityResult& r, bool html) {
  const auto& i = r.intervals;
  const bool ci = i.resamples > 0;
  auto range = [&](const eval::Interval& v, double scale, int digits, char fmt) {
    return ci ? QStringLiteral(" [%1, %2]")
                    .arg(v.lo * scale, 0, fmt, digits)
                    .arg(v.hi * scale, 0, fmt, digits)
              : QString();
  };
  const QString kl = QStringLiteral("KL %1%2 nats").arg(r.kl, 0, 'g', 3).arg(range(i.kl, 1, 3, 'g'));
  const QString top1 =
      QStringLiteral("top-1 %1%%2").arg(100 * r.top1_agreement, 0, 'f', 1).arg(range(i.top1, 100, 1, 'f'));
  const QString ppl = QStringLiteral("Δppl %1%2%%3")
                          .arg(r.delta_ppl_pct >= 0 ? QStringLiteral("+") : QString())
                          .arg(r.delta_ppl_pct, 0, 'f', 2)
                          .arg(range(i.delta_ppl_pct, 1, 2, 'f'));
  const QString sep = html ? QStringLiteral(" &nbsp;·&nbsp; ") : QStringLiteral(" · ");
  QString out = (html ? QStringLiteral("<b>%1</b>").arg(kl) : kl) + sep + top1 + sep + ppl;
  out += (html ? QStringLiteral("<br><small>%1</small>") : QStringLiteral(" (%1)"))
             .arg(QObject::tr("%1 scored tokens after %2 context tokens; %3% bootstrap intervals")
                      .arg(r.continuation_tokens)
                      .arg(r.context_tokens)
                      .arg(ci ? int(std::lround(i.confidence * 100)) : 0));
  return out;
}

}  // namespace kvscope::gui
