// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/policy.h"

#include <cmath>

#include "kvscope/common/error.h"

namespace kvscope::stream {

Policy parse_policy(const std::string& spec, const Ladder& ladder) {
  Policy p;
  p.name = spec;
  if (spec == "adaptive") {
    require(!ladder.levels.empty(), ErrorCode::InvalidArgument,
            "the adaptive policy needs a ladder with levels");
    p.kind = Policy::Kind::Adaptive;
    p.levels = ladder.levels;
  } else if (spec == "fp16") {
    p.kind = Policy::Kind::Fixed;
    p.levels = {{"fp16", fp16_config()}};
  } else if (spec == "int8") {
    p.kind = Policy::Kind::Fixed;
    p.levels = {{"int8", int8_config()}};
  } else if (spec == "text") {
    p.kind = Policy::Kind::Text;
  } else if (spec.rfind("fixed:", 0) == 0) {
    const std::string level = spec.substr(6);
    const int i = ladder.find(level);
    std::string names;
    for (const auto& l : ladder.levels) names += (names.empty() ? "" : ", ") + l.name;
    require(i >= 0, ErrorCode::InvalidArgument,
            "policy '" + spec + "': no ladder level '" + level + "' (levels: " + names + ")");
    p.kind = Policy::Kind::Fixed;
    p.levels = {ladder.levels[i]};
  } else {
    throw Error(ErrorCode::InvalidArgument,
                "unknown policy '" + spec + "' (choices: adaptive, fp16, int8, text, fixed:LEVEL)");
  }
  return p;
}

ThroughputEstimator::ThroughputEstimator(double prior_mbps, int window)
    : prior_mbps_(prior_mbps), window_(static_cast<std::size_t>(std::max(1, window))) {
  require(std::isfinite(prior_mbps) && prior_mbps > 0, ErrorCode::InvalidArgument,
          "throughput prior must be a rate > 0 Mbit/s");
}

void ThroughputEstimator::add(double bytes, double seconds) {
  if (!(seconds > 0) || !(bytes > 0)) return;
  samples_.push_back(bytes * 8.0 / 1e6 / seconds);
  while (samples_.size() > window_) samples_.pop_front();
}

double ThroughputEstimator::estimate_mbps() const {
  if (samples_.empty()) return prior_mbps_;
  double inv = 0;
  for (double s : samples_) inv += 1.0 / s;
  return double(samples_.size()) / inv;
}

Decision decide(const Policy& policy, const DecisionInput& in) {
  Decision d;
  d.estimated_mbps = in.estimated_mbps;
  const double bytes_per_s = in.estimated_mbps * 1e6 / 8.0;
  // Transfer back to back from now; decode in order on a receiver that is
  // busy until receiver_free_s.
  auto finish_at_level = [&](int level) {
    double t = in.now_s, free = in.receiver_free_s;
    for (int j = in.chunk; j < in.chunks; ++j) {
      t += in.bytes(level, j) / bytes_per_s;
      free = std::max(t, free) + in.decode_seconds(level, j);
    }
    return free;
  };
  // This chunk as text (recomputed on the receiver), the rest at `coarsest`.
  auto finish_text = [&](int coarsest) {
    double t = in.now_s + in.text_bytes(in.chunk) / bytes_per_s;
    double free =
        std::max(t, in.receiver_free_s) + (in.recompute_seconds ? in.recompute_seconds(in.chunk) : 0.0);
    for (int j = in.chunk + 1; j < in.chunks; ++j) {
      t += in.bytes(coarsest, j) / bytes_per_s;
      free = std::max(t, free) + in.decode_seconds(coarsest, j);
    }
    return free;
  };
  switch (policy.kind) {
    case Policy::Kind::Text:
      d.level = kTextLevel;
      d.predicted_finish_s = in.now_s;
      return d;
    case Policy::Kind::Fixed:
      d.level = 0;
      d.predicted_finish_s = finish_at_level(0);
      d.level_finish_s = {d.predicted_finish_s};
      return d;
    case Policy::Kind::Adaptive:
      break;
  }
  const int n = static_cast<int>(policy.levels.size());
  for (int l = 0; l < n; ++l) d.level_finish_s.push_back(finish_at_level(l));
  for (int l = 0; l < n; ++l) {
    if (d.level_finish_s[l] <= in.slo_s) {
      d.level = l;
      d.predicted_finish_s = d.level_finish_s[l];
      return d;
    }
  }
  const double coarsest = d.level_finish_s[n - 1];
  if (in.recompute_seconds) {
    const double text = finish_text(n - 1);
    if (text > coarsest) {
      d.level = n - 1;
      d.predicted_finish_s = coarsest;
      return d;
    }
    d.predicted_finish_s = text;
  } else {
    d.predicted_finish_s = coarsest;
  }
  d.level = kTextLevel;
  return d;
}

}  // namespace kvscope::stream
