// SPDX-License-Identifier: Apache-2.0
// Weight matrices kept as float32 or in the file's type (see weight_matrix.h).
#include "weight_matrix.h"

#include <algorithm>
#include <cstring>

#include "kvscope/common/error.h"
#include "kvscope/common/thread_pool.h"
#include "kvscope/io/ggml_types.h"

namespace kvscope::model::detail {
namespace {

// Below this many values one thread dequantizes; above, every core does
// (the BLAS threads are idle meanwhile).
constexpr std::int64_t kParallelValues = 1 << 18;

// llama.cpp's converter stores Q/K rows of head h as h*hd + 2i + s for HF's
// row h*hd + s*hd/2 + i; this maps a stored row to its HF row.
std::int64_t unpermuted_row(std::int64_t r, std::int64_t head_dim) {
  const std::int64_t h = r / head_dim, w = r % head_dim;
  return h * head_dim + (w % 2) * (head_dim / 2) + w / 2;
}

void dequantize_block_rows(const RowBlock& b, std::int64_t first, std::int64_t count, std::int64_t cols,
                           float* out_base) {
  const std::size_t rb = b.src.row_bytes();
  if (b.unpermute_heads == 0) {
    const auto bytes = b.src.bytes.subspan(static_cast<std::size_t>(b.src_row0 + first) * rb,
                                           static_cast<std::size_t>(count) * rb);
    io::ggml_dequantize(
        b.src.ggml_type, bytes,
        std::span<float>(out_base + (b.dst_row0 + first) * cols, static_cast<std::size_t>(count * cols)));
    return;
  }
  const std::int64_t head_dim = b.rows / b.unpermute_heads;
  for (std::int64_t r = first; r < first + count; ++r) {
    const auto bytes = b.src.bytes.subspan(static_cast<std::size_t>(b.src_row0 + r) * rb, rb);
    const std::int64_t dst = b.dst_row0 + unpermuted_row(r, head_dim);
    io::ggml_dequantize(b.src.ggml_type, bytes,
                        std::span<float>(out_base + dst * cols, static_cast<std::size_t>(cols)));
  }
}

}  // namespace

WeightMatrix::WeightMatrix(std::int64_t rows, std::int64_t cols, std::vector<RowBlock> blocks, bool resident,
                           const torch::Device& device, bool in_out_layout)
    : rows_(rows), cols_(cols), blocks_(std::move(blocks)), device_(device) {
  if (!resident) return;
  torch::Tensor w = torch::empty({rows_, cols_}, torch::kFloat32);
  dequantize(0, rows_, w.data_ptr<float>());
  blocks_.clear();  // the file is not needed any more
  in_out_ = in_out_layout ? w.t().contiguous().to(device_) : w.to(device_).t();
}

std::int64_t WeightMatrix::held_bytes() const {
  if (resident()) return elements() * 4;
  std::int64_t n = 0;
  for (const auto& b : blocks_) n += b.rows * static_cast<std::int64_t>(b.src.row_bytes());
  return n;
}

void WeightMatrix::dequantize(std::int64_t r0, std::int64_t n, float* out) const {
  // Work items: pieces of each block overlapping [r0, r0 + n), split so both
  // cores get a share of large matrices.
  struct Piece {
    const RowBlock* block;
    std::int64_t first, count;
  };
  std::vector<Piece> pieces;
  const int threads = resolve_threads(0);
  const std::int64_t per_piece =
      std::max<std::int64_t>(1, n * cols_ >= kParallelValues ? (n + threads * 4 - 1) / (threads * 4) : n);
  for (const auto& b : blocks_) {
    const std::int64_t lo = std::max(r0, b.dst_row0), hi = std::min(r0 + n, b.dst_row0 + b.rows);
    if (lo >= hi) continue;
    if (b.unpermute_heads > 0 && (lo != b.dst_row0 || hi != b.dst_row0 + b.rows)) {
      throw Error(ErrorCode::Internal, "a permuted weight block can only be dequantized whole");
    }
    for (std::int64_t s = lo; s < hi; s += per_piece)
      pieces.push_back({&b, s - b.dst_row0, std::min(per_piece, hi - s)});
  }
  // Output rows are relative to r0.
  float* base = out - r0 * cols_;
  if (pieces.size() == 1) {
    dequantize_block_rows(*pieces[0].block, pieces[0].first, pieces[0].count, cols_, base);
    return;
  }
  parallel_for(pieces.size(), 0, [&](std::size_t i) {
    dequantize_block_rows(*pieces[i].block, pieces[i].first, pieces[i].count, cols_, base);
  });
}

torch::Tensor WeightMatrix::apply(const torch::Tensor& x, torch::Tensor& scratch) const {
  if (resident()) return torch::mm(x, in_out_);
  if (scratch.numel() < elements()) throw Error(ErrorCode::Internal, "weight scratch buffer too small");
  dequantize(0, rows_, scratch.data_ptr<float>());
  const torch::Tensor w = scratch.narrow(0, 0, elements()).view({rows_, cols_});
  if (device_.is_cpu()) return torch::mm(x, w.t());
  return torch::mm(x, w.to(device_).t());
}

torch::Tensor WeightMatrix::apply_rows(const torch::Tensor& x, std::int64_t r0, std::int64_t n,
                                       torch::Tensor& scratch) const {
  if (resident()) return torch::mm(x, in_out_.narrow(1, r0, n));
  if (scratch.numel() < n * cols_) throw Error(ErrorCode::Internal, "weight scratch buffer too small");
  dequantize(r0, n, scratch.data_ptr<float>());
  const torch::Tensor w = scratch.narrow(0, 0, n * cols_).view({n, cols_});
  if (device_.is_cpu()) return torch::mm(x, w.t());
  return torch::mm(x, w.to(device_).t());
}

torch::Tensor WeightMatrix::rows_of(const std::vector<std::int64_t>& ids) const {
  const auto T = static_cast<std::int64_t>(ids.size());
  if (resident()) {
    std::vector<std::int64_t> copy = ids;
    const torch::Tensor idx = torch::from_blob(copy.data(), {T}, torch::kLong).clone().to(device_);
    return in_out_.t().index_select(0, idx);
  }
  torch::Tensor out = torch::empty({T, cols_}, torch::kFloat32);
  float* o = out.data_ptr<float>();
  for (std::int64_t t = 0; t < T; ++t) dequantize(ids[t], 1, o + t * cols_);
  return out.to(device_);
}

}  // namespace kvscope::model::detail
