// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QObject>
#include <QString>
#include <QTimer>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/eval/quality.h"

namespace kvscope::gui {

class JobRunner;
class Session;
struct QualityReferenceSlot;

/// Quality in the loop (core/eval): how the model continues the current
/// context from a decoded cache, against continuing from the original.
/// - The reference (the first N-1 tokens of the session's cache, rounded to
///   fp16, and its continuation logits over the last M = kScoredTokens
///   tokens) is computed once per cache, from the cache itself: no second
///   prefill.
/// - live(): the codec panel's settings after each retune; a new request
///   cancels the one before (its own worker).
/// - sweep(): many settings for the rate-distortion view (another worker),
///   one result signal per point as it finishes.
/// - decoded(): a cache some other stage produced (what a streaming policy
///   delivered), on a third worker.
/// Results are kept per settings (defaults filled in), so a point already
/// measured on this reference comes back at once.
class QualityService : public QObject {
  Q_OBJECT

 public:
  /// Continuation tokens scored: enough that int8 and int4 have disjoint
  /// KL intervals on the default context (about 1,700 tokens).
  static constexpr int kScoredTokens = 256;
  /// live() waits this long for further edits before measuring.
  static constexpr int kLiveDelayMs = 250;

  explicit QualityService(Session* session, QObject* parent = nullptr);
  ~QualityService() override;

  /// Why quality cannot be measured now (no model, a cache without token
  /// ids, a cache from another model, too few tokens), or empty.
  QString unavailableReason() const;
  /// The reference's ppl and split once computed (else null).
  std::shared_ptr<const eval::Reference> reference() const;

  /// Measures `config` on the current cache after kLiveDelayMs without a
  /// newer request; cancels the previous live request.
  void live(const codec::CodecConfig& config);
  /// Drops the pending or running live measurement (the settings are being
  /// changed: the encode the user waits for gets the cores); the next live()
  /// measures again. Known results are kept.
  void cancelLive();
  /// Measures every config in order (results already known come at once).
  void sweep(const std::vector<codec::CodecConfig>& configs, const QString& title);
  void cancelSweep();
  /// Measures a decoded cache of the whole context (same shape as the
  /// session's), labelled `label` in the result signal.
  void decoded(std::shared_ptr<const kv::KVCache> cache, const QString& label);

  /// A result already measured for these settings on the current reference.
  std::optional<eval::QualityResult> known(const codec::CodecConfig& config) const;
  /// The config with every parameter the codec declares (defaults added):
  /// the key results are kept under.
  static codec::CodecConfig complete(const codec::CodecConfig& config, const kv::CacheShape* shape);

  JobRunner* liveRunner() const { return live_.get(); }
  JobRunner* sweepRunner() const { return sweep_.get(); }
  JobRunner* decodedRunner() const { return decoded_.get(); }

 signals:
  void liveStarted();
  void liveResult(const eval::QualityResult& result);
  void liveFailed(const QString& message);
  void sweepPoint(const eval::QualityResult& result);
  void sweepFinished();
  void decodedResult(const QString& label, const eval::QualityResult& result);
  /// The cache changed: earlier results no longer apply.
  void reset();

 private:
  eval::EvalConfig evalConfig() const;
  void startLive(const codec::CodecConfig& config);
  void runNextDecoded();
  void remember(const eval::QualityResult& result);

  Session* session_;
  std::shared_ptr<QualityReferenceSlot> slot_;
  std::map<std::string, eval::QualityResult> results_;
  QTimer debounce_;
  codec::CodecConfig pending_live_;
  std::vector<std::pair<std::shared_ptr<const kv::KVCache>, QString>> pending_decoded_;
  std::unique_ptr<JobRunner> live_, sweep_, decoded_;
};

/// "KL 0.0123 [0.0101, 0.0150] nats" style summary lines of a result.
QString qualitySummary(const eval::QualityResult& r, bool html);

}  // namespace kvscope::gui
