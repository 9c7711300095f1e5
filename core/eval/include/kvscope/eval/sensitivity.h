// SPDX-License-Identifier: Apache-2.0
#pragma once

// Measures a model's sensitivity to cachegen's bins layer by layer (for the
// bin plans of kvscope/codec/bin_plan.h): the continuation's KL with every
// (layer, kind) at `base_bins`, then with one layer's keys or values alone at
// `coarse_bins`, over one or more contexts.

#include <vector>

#include "kvscope/codec/bin_plan.h"
#include "kvscope/eval/quality.h"

namespace kvscope::eval {

/// Runs 1 + 2 x layers evaluations per reference with cachegen and `params`
/// (bins parameters are replaced). The result's KL numbers are means over the
/// references. Error(InvalidArgument) for no references, bins outside
/// 4 <= coarse < base <= 256 or a bad parameter; Error(Cancelled) from the
/// evaluator's progress.
codec::LayerSensitivity measure_sensitivity(Evaluator& evaluator, const std::vector<const Reference*>& refs,
                                            const codec::ParamSet& params, int base_bins, int coarse_bins);

}  // namespace kvscope::eval
