// SPDX-License-Identifier: Apache-2.0
#pragma once

// The receiver's compute backed by kvscope::model, for front ends that link
// kvscope_model (the CLI and the app). Header-only so that kvscope_stream
// itself never depends on the model runtime or libtorch (model.h is
// torch-free). docs/streaming.md, "Delay model", says what is charged.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>
#include <vector>

#include "kvscope/common/error.h"
#include "kvscope/model/model.h"
#include "kvscope/stream/recompute.h"

namespace kvscope::stream {

/// Wall seconds of greedy generation after `cache` + `prompt`: of one token
/// (the prompt's prefill, which yields the first token) and of one decode
/// step (the mean over 8 further tokens, so timer noise cannot swamp it).
/// Over `runs` interleaved runs, each of the two generations keeps its
/// fastest time and the step is the difference of those: the difference of
/// one run's pair read 0 whenever a busy machine slowed its one-token run
/// more than its nine-token run.
inline std::pair<double, double> generate_times(const model::Model& model, const kv::KVCache& cache,
                                                std::span<const std::int32_t> prompt, int runs = 1) {
  using Clock = std::chrono::steady_clock;
  constexpr int kSteps = 8;
  double one = 1e30, more = 1e30;
  for (int run = 0; run < std::max(1, runs); ++run) {
    auto t0 = Clock::now();
    (void)model.generate(cache, prompt, 1);
    one = std::min(one, std::chrono::duration<double>(Clock::now() - t0).count());
    t0 = Clock::now();
    (void)model.generate(cache, prompt, 1 + kSteps);
    more = std::min(more, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return {one, std::max(0.0, more - one) / kSteps};
}

/// Measures this machine's recompute rate with `model`: prefill of the first
/// `tokens` of `sample` (at least 16; a warm-up run first, then the faster of
/// two timed runs) and one decode step after it. Error(InvalidArgument) when
/// `sample` has fewer than 16 tokens.
inline RecomputeRate measure_recompute_rate(const model::Model& model, std::span<const std::int32_t> sample,
                                            int tokens = 256) {
  require(sample.size() >= 16, ErrorCode::InvalidArgument,
          "measuring the recompute rate needs at least 16 tokens of text");
  const std::size_t n = std::min<std::size_t>(sample.size() - 1, std::size_t(std::max(16, tokens)));
  const auto head = sample.first(n);
  model::PrefillOptions po;
  po.want_last_logits = false;
  double prefill = 1e30;
  kv::KVCache cache;
  for (int run = 0; run < 3; ++run) {
    auto r = model.prefill(head, po);
    if (run > 0) prefill = std::min(prefill, r.seconds);
    cache = std::move(r.cache);
  }
  (void)generate_times(model, cache, sample.subspan(n, 1));  // warm-up
  const double step = generate_times(model, cache, sample.subspan(n, 1), 2).second;
  RecomputeRate rate;
  rate.tokens_per_s = double(n) / std::max(prefill, 1e-9);
  rate.first_token_s = step;
  std::ostringstream d;
  d << "measured: " << model.config().name << " on " << model.device() << ", prefill of " << n << " tokens";
  rate.source = d.str();
  return rate;
}

/// Text chunks recomputed with `model` over the decoded (lossy) prefix the
/// receiver holds (Model::extend), as a serving engine extending its cache
/// would: the KV is the real recompute's. The time charged is tokens /
/// rate.tokens_per_s when that is > 0 (the measured or edited recompute
/// rate), else the wall time of the extend call. `model` must outlive it.
inline Recomputer model_recomputer(const model::Model& model, const RecomputeRate& rate) {
  Recomputer r;
  std::ostringstream d;
  d << "model " << model.config().name << " on " << model.device() << " over the decoded prefix, ";
  if (rate.tokens_per_s > 0)
    d << "charged at " << rate.tokens_per_s << " tokens/s"
      << (rate.source.empty() ? "" : " (" + rate.source + ")");
  else
    d << "charged its measured time";
  r.description = d.str();
  const double tps = rate.tokens_per_s;
  const model::Model* m = &model;
  r.recompute = [m, tps](const RecomputeRequest& req) {
    require(req.preceding != nullptr, ErrorCode::InvalidArgument, "recompute needs the preceding cache");
    auto res = m->extend(*req.preceding, req.tokens);
    RecomputeResult out;
    out.cache = std::move(res.cache);
    out.seconds = tps > 0 ? req.range.tokens() / tps : res.seconds;
    return out;
  };
  if (tps > 0) r.estimate_seconds = [tps](int tokens, int) { return tokens / tps; };
  return r;
}

/// The query `query_tokens` after the context: estimated at `rate` (what the
/// policy budgets), measured with `model` over the assembled cache after the
/// run (the faster of two runs): the prefill is greedy generation of one
/// token after the query (it yields the first token), the first token's part
/// is one decode step (generate_times()). `model` must outlive it.
inline QueryCost model_query(const model::Model& model, std::vector<std::int32_t> query_tokens,
                             const RecomputeRate& rate) {
  QueryCost q = query_at_rate(static_cast<int>(query_tokens.size()), rate);
  const model::Model* m = &model;
  auto ids = std::make_shared<const std::vector<std::int32_t>>(std::move(query_tokens));
  q.measure = [m, ids](const kv::KVCache& assembled) {
    // The faster of two runs: the first also pays one-off allocations.
    return generate_times(*m, assembled, *ids, 2);
  };
  return q;
}

}  // namespace kvscope::stream
