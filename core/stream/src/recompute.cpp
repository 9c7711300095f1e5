#include "kvscope/stream/recompute.h"

#include <cmath>
#include <sstream>

#include "kvscope/common/error.h"

namespace kvscope::stream {

Recomputer compute_profile_recomputer(std::shared_ptr<const kv::KVCache> reference, double tokens_per_s) {
  require(reference != nullptr, ErrorCode::InvalidArgument, "compute profile needs the reference cache");
  require(std::isfinite(tokens_per_s) && tokens_per_s > 0, ErrorCode::InvalidArgument,
          "compute profile rate must be > 0 tokens/s");
  std::ostringstream d;
  d << "compute profile " << tokens_per_s << " tokens/s";
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
