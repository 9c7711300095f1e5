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

/// One result as a JSON object (keys: context, codec, params, bits_per_element,
/// ratio_vs_fp16, ratio_vs_int8, encoded_bytes, ppl_ref, ppl, delta_ppl_pct,
/// top1_agreement, kl, greedy_match, max_abs_error, task_accuracy,
/// task_accuracy_ref, tasks, timings), pretty-printed when `indent` >= 0.
std::string result_json(const QualityResult& r, int indent = 2);
/// An array of results.
std::string results_json(const std::vector<QualityResult>& rs, int indent = 2);

/// CSV with a header row; params as "k=v;k=v" in one quoted column.
std::string results_csv(const std::vector<QualityResult>& rs);

}  // namespace kvscope::eval
