// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/recompute.h"

#include <cmath>
#include <sstream>

#include "kvscope/common/error.h"

namespace kvscope::stream {

QueryCost query_at_rate(int tokens, const RecomputeRate& rate) {
  require(tokens >= 0, ErrorCode::InvalidArgument, "query tokens must be >= 0");
  require(std::isfinite(rate.tokens_per_s) && rate.tokens_per_s > 0, ErrorCode::InvalidArgument,
          "recompute rate must be > 0 tokens/s");
  QueryCost q;
  q.tokens = tokens;
  q.prefill_s = tokens / rate.tokens_per_s;
  q.first_token_s = tokens > 0 ? std::max(0.0, rate.first_token_s) : 0.0;
  std::ostringstream d;
  d << "at recompute rate " << rate.tokens_per_s << " tokens/s, first token " << q.first_token_s << " s";
  if (!rate.source.empty()) d << " (" << rate.source << ")";
  q.description = d.str();
  return q;
}

Recomputer fixed_rate_recomputer(std::shared_ptr<const kv::KVCache> reference, double tokens_per_s) {
  require(reference != nullptr, ErrorCode::InvalidArgument,
          "a fixed recompute rate needs the reference cache");
  require(std::isfinite(tokens_per_s) && tokens_per_s > 0, ErrorCode::InvalidArgument,
          "recompute rate must be > 0 tokens/s");
  std::ostringstream d;
  d << "recompute rate " << tokens_per_s << " tokens/s (no model: the original KV stands in)";
  Recomputer r;
  r.description = d.str();
  r.recompute = [reference, tokens_per_s](const RecomputeRequest& req) {
    RecomputeResult out;
    out.cache = reference->slice_tokens(req.range.begin, req.range.end);
    out.seconds = req.range.tokens() / tokens_per_s;
    return out;
  };
  r.estimate_seconds = [tokens_per_s](int tokens, int) { return tokens / tokens_per_s; };
  return r;
}

}  // namespace kvscope::stream
