#pragma once

// A Recomputer backed by kvscope::model, for front ends that link
// kvscope_model (the CLI and the GUI). Header-only so that kvscope_stream
// itself never depends on the model runtime or libtorch (model.h is torch-free).
//
// How it measures: the model API prefills from position 0 (it has no "extend
// this cache" call), so recomputing chunk [b, e) runs prefill(tokens[0, e))
// and takes tokens [b, e) of the result -- the exact KV a receiver would
// compute -- and reports the marginal time t(prefill 0..e) - t(prefill 0..b),
// both measured (each prefix timed once and kept). That marginal time
// approximates prefilling the chunk on top of an existing cache; for the
// "text" policy the per-chunk times add up to exactly one full prefill.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <vector>

#include "kvscope/model/model.h"
#include "kvscope/stream/recompute.h"

namespace kvscope::stream {

/// `model` must outlive the recomputer. `context_tokens` are the whole
/// context's ids (the chunk requests index into them). `tokens_per_s` (> 0)
/// is the policy's estimate, e.g. context tokens / the initial prefill's
/// seconds; 0 = no estimate.
inline Recomputer model_recomputer(const model::Model& model, std::vector<std::int32_t> context_tokens,
                                   double tokens_per_s) {
  struct State {
    const model::Model* model;
    std::vector<std::int32_t> tokens;
    std::mutex mutex;
    std::map<int, double> prefix_seconds{{0, 0.0}};
    // Prefill of tokens [0, n), timed; keeps the timing.
    kv::KVCache run(int n) {
      model::PrefillOptions opt;
      opt.want_last_logits = false;
      const auto t0 = std::chrono::steady_clock::now();
      auto r = model->prefill(std::span(tokens.data(), std::size_t(n)), opt);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard lock(mutex);
      prefix_seconds[n] = s;
      return std::move(r.cache);
    }
    double seconds(int n) {
      {
        std::lock_guard lock(mutex);
        auto it = prefix_seconds.find(n);
        if (it != prefix_seconds.end()) return it->second;
      }
      run(n);
      std::lock_guard lock(mutex);
      return prefix_seconds[n];
    }
  };
  auto state = std::make_shared<State>();
  state->model = &model;
  state->tokens = std::move(context_tokens);
  Recomputer r;
  std::ostringstream d;
  d << "model " << model.config().name << " on " << model.device() << " (measured prefill)";
  r.description = d.str();
  r.recompute = [state](const RecomputeRequest& req) {
    require(req.range.end <= static_cast<int>(state->tokens.size()), ErrorCode::InvalidArgument,
            "recompute request beyond the context");
    const double before = state->seconds(req.range.begin);
    kv::KVCache full = state->run(req.range.end);
    double after;
    {
      std::lock_guard lock(state->mutex);
      after = state->prefix_seconds[req.range.end];
    }
    RecomputeResult out;
    out.cache = full.slice_tokens(req.range.begin, req.range.end);
    out.seconds = std::max(0.0, after - before);
    return out;
  };
  if (tokens_per_s > 0)
    r.estimate_seconds = [tokens_per_s](int tokens, int) { return tokens / tokens_per_s; };
  return r;
}

}  // namespace kvscope::stream
