// SPDX-License-Identifier: Apache-2.0
#include "kvscope/eval/sensitivity.h"

#include "kvscope/common/error.h"

namespace kvscope::eval {

codec::LayerSensitivity measure_sensitivity(Evaluator& evaluator, const std::vector<const Reference*>& refs,
                                            const codec::ParamSet& params, int base_bins, int coarse_bins) {
  require(!refs.empty(), ErrorCode::InvalidArgument, "sensitivity: no context");
  require(coarse_bins >= 4 && coarse_bins < base_bins && base_bins <= 256, ErrorCode::InvalidArgument,
          "sensitivity: bins must satisfy 4 <= coarse < base <= 256");
  const int L = refs.front()->cache.shape().layers;
  codec::LayerSensitivity s;
  s.layers = L;
  s.base_bins = base_bins;
  s.coarse_bins = coarse_bins;
  s.key_kl.assign(L, 0.0);
  s.value_kl.assign(L, 0.0);
  for (const auto& [k, v] : params) s.params += (s.params.empty() ? "" : ";") + k + "=" + v;
  auto bins_text = [&](int coarse_layer) {
    std::string t;
    for (int l = 0; l < L; ++l)
      t += (l ? "," : "") + std::to_string(l == coarse_layer ? coarse_bins : base_bins);
    return t;
  };
  auto kl_of = [&](const Reference& ref, int key_layer, int value_layer) {
    codec::CodecConfig c{"cachegen", params};
    c.params["key_bins"] = bins_text(key_layer);
    c.params["value_bins"] = bins_text(value_layer);
    c.params["key_layer_splits"] = "";
    c.params["value_layer_splits"] = "";
    return evaluator.evaluate(ref, c).kl;
  };
  const auto progress = evaluator.config().progress;
  const double total = double(refs.size()) * (1 + 2 * L);
  int done = 0;
  for (const Reference* ref : refs) {
    require(ref->cache.shape().layers == L, ErrorCode::InvalidArgument,
            "sensitivity: contexts differ in layers");
    const double base = kl_of(*ref, -1, -1);
    s.base_kl += base / double(refs.size());
    report_progress(progress, ++done / total, "sensitivity " + ref->label);
    for (int l = 0; l < L; ++l) {
      s.key_kl[l] += (kl_of(*ref, l, -1) - base) / double(refs.size());
      report_progress(progress, ++done / total, "sensitivity " + ref->label + " keys " + std::to_string(l));
      s.value_kl[l] += (kl_of(*ref, -1, l) - base) / double(refs.size());
      report_progress(progress, ++done / total, "sensitivity " + ref->label + " values " + std::to_string(l));
    }
    s.contexts.push_back(ref->label);
    s.context_tokens = int(ref->context_tokens.size());
    s.scored_tokens = int(ref->continuation_tokens.size());
  }
  return s;
}

}  // namespace kvscope::eval
