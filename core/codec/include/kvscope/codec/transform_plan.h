// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the `transform` codec would do with a cache, without encoding it:
// per layer, kind and basis group, the component spectrum (calibrated and
// this cache's variances) and the bits the budget gives each component.
// The app draws this ("energy compaction"); the encoder makes the same
// decisions (docs/bitstream.md, "transform").

#include <cstddef>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/transform_basis.h"

namespace kvscope::codec::transform {

struct GroupPlan {
  int layer = 0;
  kv::Kind kind = kv::Kind::Key;
  int group = 0;    ///< KV head for grouping "head", else 0
  double step = 0;  ///< quantization step of the group (before query weighting)
  /// Per component: the step it is coded with, step times its query-weighting
  /// scale (key_weighting, value_weighting); equal to `step` when unweighted.
  std::vector<double> component_step;
  /// Per component (basis order): the basis's variance (its eigenvalue).
  std::vector<double> basis_variance;
  /// Per component: mean square of this cache's coefficients (a token sample).
  std::vector<double> cache_variance;
  /// Per component: estimated bits per token; 0 = not coded (below the water level).
  std::vector<double> bits_per_token;
  int coded_components() const;
};

struct TransformPlan {
  /// Estimated bytes of the stream by purpose (the encoded stream's exact
  /// split is in its SizeReport: header, tables = basis + side, payload).
  struct Breakdown {
    std::size_t header = 0;   ///< container and section headers
    std::size_t basis = 0;    ///< shipped basis (basis=cache only)
    std::size_t side = 0;     ///< steps, component parameters
    std::size_t exact = 0;    ///< sink and recent-window tokens at fp16
    std::size_t payload = 0;  ///< coded coefficients
    std::size_t total() const { return header + basis + side + exact + payload; }
  };
  Grouping grouping = Grouping::Layer;
  double water_level = 0;       ///< distortion per coded component (weight 1), the budget's Lagrange level
  double bits_per_element = 0;  ///< estimate, all side information included
  /// The query weighting exponents in effect: the parameters, or 0 where no
  /// calibration with channel weights is given (the stream is then unweighted).
  double key_weighting = 0, value_weighting = 0;
  /// The value token gain exponent (value_gain; 0 = none): value groups'
  /// variances are then those of the coefficients as coded, each token's
  /// divided by its gain.
  double value_gain = 0;
  Breakdown estimate;
  std::vector<GroupPlan> groups;  ///< index (layer*2 + kind)*groups_per_layer_kind + group
};

/// Plans the encoding of `cache` with `transform` parameters `params` (as
/// encode() would; same errors, e.g. a missing calibration).
TransformPlan plan_transform(const kv::KVCache& cache, const ParamSet& params, int threads = 0);

}  // namespace kvscope::codec::transform
