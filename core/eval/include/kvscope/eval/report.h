// SPDX-License-Identifier: Apache-2.0
#pragma once

// Sweeps over codec configurations and the CSV/JSON forms of quality results
// that the CLI prints and docs/results.md is built from.

#include <map>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/eval/quality.h"

namespace kvscope::eval {

/// Every combination of `codecs` x the values in `vary` (name -> values),
/// each on top of `base` params. A vary name a codec does not have is skipped
/// for that codec (so "--vary bins=..." applies to the codecs that have it).
/// Error(InvalidArgument) when `codecs` is empty.
std::vector<codec::CodecConfig> expand_grid(const std::vector<std::string>& codecs,
                                            const codec::ParamSet& base,
                                            const std::map<std::string, std::vector<std::string>>& vary);

/// Evaluates every configuration on one reference (one prefill, reused),
/// reporting progress across points. Error(Cancelled) from config.progress.
std::vector<QualityResult> run_sweep(Evaluator& evaluator, const Reference& ref,
                                     const std::vector<codec::CodecConfig>& configs,
                                     const std::vector<const std::vector<TaskReference>*>& tasks = {});

/// One configuration over several contexts: the mean of every metric, the
/// rate-distortion summary `kvscope-cli sweep` prints and writes.
struct SweepPoint {
  codec::CodecConfig config;
  int contexts = 0;  ///< results averaged
  double bits_per_element = 0, ratio_vs_int8 = 0;
  /// Size breakdown in bits per element: container and section headers,
  /// tables (and stream lengths), quantization steps, coded payload.
  double header_bpe = 0, table_bpe = 0, step_bpe = 0, payload_bpe = 0;
  double kl = 0, top1_agreement = 0, delta_ppl_pct = 0, greedy_match = 0;
  double worst_kl = 0, worst_top1 = 0;  ///< largest KL, smallest top-1 over the contexts
  /// No other point has fewer (or equal) bits and a lower (or equal) mean KL,
  /// with at least one strictly better: on the rate-distortion front.
  bool pareto = false;
};

/// Groups results by configuration (codec and params, in first-seen order)
/// and averages them; marks the KL Pareto front across the points.
std::vector<SweepPoint> summarize_sweep(const std::vector<QualityResult>& results);

/// CSV of summarized points (one row per configuration, header row first):
/// codec, params, contexts, bits_per_element, ratio_vs_int8, header/table/
/// step/payload bits per element, kl, worst_kl, top1_agreement, worst_top1,
/// delta_ppl_pct, greedy_match, pareto (0/1).
std::string sweep_points_csv(const std::vector<SweepPoint>& points);

/// One result as a JSON object (keys: context, codec, params, bits_per_element,
/// ratio_vs_fp16, ratio_vs_int8, encoded_bytes, ppl_ref, ppl, delta_ppl_pct,
/// top1_agreement, kl, greedy_match, max_abs_error, task_accuracy,
/// task_accuracy_ref, tasks, timings), pretty-printed when `indent` >= 0.
std::string result_json(const QualityResult& r, int indent = 2);
/// An array of results.
std::string results_json(const std::vector<QualityResult>& rs, int indent = 2);

/// CSV with a header row; params as "k=v;k=v" in one quoted column; the
/// size breakdown (header_bytes, table_bytes, step_bytes, payload_bytes)
/// in the last columns.
std::string results_csv(const std::vector<QualityResult>& rs);

}  // namespace kvscope::eval
