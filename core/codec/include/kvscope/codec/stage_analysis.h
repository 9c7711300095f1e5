// SPDX-License-Identifier: Apache-2.0
#pragma once

// Where cachegen's bits go, stage by stage, for the GUI's teaching views:
// fp16 -> fixed-length quantized symbols -> entropy of the raw quantized
// symbols -> entropy after anchor/delta coding -> what the coder wrote.

#include <vector>

#include "kvscope/codec/codec.h"

namespace kvscope::codec {

/// Bits per element at one stage, overall and per (layer, kind) at index layer*2+kind.
struct StageBits {
  double overall = 0;
  std::vector<double> per_layer;
};

struct StageAnalysis {
  StageBits fp16;  ///< 16 everywhere
  StageBits
      quantized_fixed;      ///< log2(bins) of each layer's bins: a fixed-length code of the quantized values
  StageBits raw_entropy;    ///< empirical entropy of the quantized values Q per (layer, kind, channel)
  StageBits delta_entropy;  ///< empirical entropy of anchor and delta symbols per (layer, kind, channel)
  StageBits coded;          ///< the actual stream: every byte (headers, tables, scales) over elements
  /// Coded bits of the entropy-coded payload only (no tables, scales or headers).
  double coded_payload = 0;
  EncodeResult encoded;  ///< the cachegen encode that `coded` measures
};

/// Encodes `cache` with cachegen and `params` (validated as encode() does;
/// Error(InvalidArgument) naming a bad parameter) and measures every stage.
/// Entropies are empirical (-sum p log2 p of the symbols' own histograms per
/// channel), so they are what an ideal per-channel coder with free tables
/// would reach.
StageAnalysis analyze_stages(const kv::KVCache& cache, const ParamSet& params,
                             const EncodeOptions& options = {});

}  // namespace kvscope::codec
