// SPDX-License-Identifier: Apache-2.0
#pragma once

// Private to core/model: one weight matrix [out, in] of the forward pass,
// held either as a float32 tensor (dequantized at load) or as views of the
// file's bytes dequantized into a caller's scratch buffer each time it runs.
// Fused matrices (q|k|v, gate|up) are several stored tensors stacked by rows.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "weight_source.h"

namespace kvscope::model::detail {

/// Rows of one stored tensor placed at a row offset of the matrix.
struct RowBlock {
  StoredTensor src;
  std::int64_t src_row0 = 0, rows = 0, dst_row0 = 0;
  /// > 0: the rows are llama.cpp's interleaved-RoPE permutation of this many
  /// heads; dequantizing restores rotate-half order (HF's).
  int unpermute_heads = 0;
};

class WeightMatrix {
 public:
  WeightMatrix() = default;
  /// Rows x cols from `blocks` (which tile the rows exactly; checked by the
  /// caller). `resident`: dequantize now into a float32 tensor on `device`,
  /// stored [in, out] contiguous (`in_out_layout`, fastest for x @ W) or
  /// [out, in] (row lookups, e.g. the token embedding).
  WeightMatrix(std::int64_t rows, std::int64_t cols, std::vector<RowBlock> blocks, bool resident,
               const torch::Device& device, bool in_out_layout = true);

  std::int64_t rows() const { return rows_; }
  std::int64_t cols() const { return cols_; }
  std::int64_t elements() const { return rows_ * cols_; }
  bool resident() const { return in_out_.defined(); }
  /// Bytes this matrix holds in memory (float32 copy, or the file bytes it views).
  std::int64_t held_bytes() const;

  /// x [T, cols] times the matrix transposed: [T, rows]. A stored matrix is
  /// first dequantized into `scratch` (at least elements() floats, on the CPU).
  torch::Tensor apply(const torch::Tensor& x, torch::Tensor& scratch) const;
  /// Rows `ids` of the matrix as a [ids, cols] tensor (embedding lookup).
  torch::Tensor rows_of(const std::vector<std::int64_t>& ids) const;
  /// x [T, cols] times rows [r0, r0 + n) transposed, n * cols <= scratch size.
  torch::Tensor apply_rows(const torch::Tensor& x, std::int64_t r0, std::int64_t n,
                           torch::Tensor& scratch) const;
  /// The float32 [in, out] tensor of a resident matrix (undefined otherwise).
  const torch::Tensor& in_out() const { return in_out_; }

  /// Dequantizes rows [r0, r0 + n) into out (n * cols floats, row-major).
  void dequantize(std::int64_t r0, std::int64_t n, float* out) const;

 private:
  std::int64_t rows_ = 0, cols_ = 0;
  std::vector<RowBlock> blocks_;
  torch::Tensor in_out_;  // resident: [cols, rows] (possibly a transposed view)
  torch::Device device_{torch::kCPU};
};

}  // namespace kvscope::model::detail
