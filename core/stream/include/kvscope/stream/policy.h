#pragma once

// Which level each chunk is sent at: the SLO-driven adaptive policy of
// CacheGen (docs/architecture.md, "Streaming and adaptation") and fixed
// baselines. The same code runs on the simulated clock and over the real
// transport.

#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "kvscope/stream/ladder.h"

namespace kvscope::stream {

/// Level index meaning "send the chunk's tokens as text; the receiver
/// recomputes its KV".
inline constexpr int kTextLevel = -1;

struct Policy {
  enum class Kind { Adaptive, Fixed, Text };
  Kind kind = Kind::Adaptive;
  /// Candidate levels, fine -> coarse. Adaptive: the ladder; Fixed: one level.
  std::vector<LadderLevel> levels;
  /// How it was asked for: "adaptive", "fp16", "int8", "text", "fixed:NAME".
  std::string name;
};

/// Parses a policy spec: "adaptive" (the ladder's levels), "fp16", "int8",
/// "text" (every chunk recomputed), "fixed:LEVEL" (a ladder level by name or
/// index). Error(InvalidArgument) listing the choices otherwise.
Policy parse_policy(const std::string& spec, const Ladder& ladder);

/// Throughput estimator: harmonic mean of the last `window` per-chunk
/// throughputs (bytes / send duration). The harmonic mean is what the time to
/// send a fixed number of bytes averages over, and one fast outlier cannot
/// inflate it. Before any chunk is sent it returns the prior.
class ThroughputEstimator {
 public:
  explicit ThroughputEstimator(double prior_mbps, int window = 3);
  /// Records one transfer; ignored when seconds <= 0 or bytes == 0.
  void add(double bytes, double seconds);
  double estimate_mbps() const;
  bool has_samples() const { return !samples_.empty(); }

 private:
  double prior_mbps_;
  std::size_t window_;
  std::deque<double> samples_;  // Mbit/s
};

/// What the policy needs to know about the chunks still to send.
struct DecisionInput {
  int chunk = 0;     ///< the chunk about to be sent
  int chunks = 0;    ///< total chunks
  double now_s = 0;  ///< sender clock, profile seconds since the start
  double slo_s = 0;  ///< deadline for the whole context, from the start
  double estimated_mbps = 0;
  /// When the receiver is expected to have decoded every chunk sent so far
  /// (the sender's own estimate from its decode-time estimates; no feedback).
  double receiver_free_s = 0;
  /// Encoded bytes of chunk j at candidate level l.
  std::function<double(int level, int chunk)> bytes;
  /// Estimated decode seconds of chunk j at level l.
  std::function<double(int level, int chunk)> decode_seconds;
  /// Bytes of chunk j sent as text, and the estimated seconds to recompute
  /// it; recompute_seconds may be null (no estimate: text always wins when
  /// no level fits, as in the paper).
  std::function<double(int chunk)> text_bytes;
  std::function<double(int chunk)> recompute_seconds;
};

struct Decision {
  int level = kTextLevel;  ///< index into Policy::levels, or kTextLevel
  double estimated_mbps = 0;
  double predicted_finish_s = 0;  ///< when the policy expects the context loaded
  /// Adaptive and Fixed: the predicted finish had each candidate level been
  /// chosen for the rest of the context (why the level was picked).
  std::vector<double> level_finish_s;
};

/// The adaptive rule: for each level from fine to coarse, predict when the
/// context would be loaded if this and every later chunk went at that level:
/// chunks arrive back to back at the estimated throughput, and the receiver
/// decodes them in order as they arrive (decode pipelined with transfer,
/// starting when it is free), so the finish is the last chunk's decode end.
/// Pick the first level predicted to finish by the SLO. If none does, send
/// this chunk as text, unless a recompute estimate says text would finish
/// later than the coarsest level (then the coarsest level). Fixed and Text
/// policies ignore the estimate.
Decision decide(const Policy& policy, const DecisionInput& input);

}  // namespace kvscope::stream
