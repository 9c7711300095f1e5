// SPDX-License-Identifier: Apache-2.0
#pragma once

// PCA bases of a model's KV cache for the `transform` codec
// (docs/bitstream.md, section "transform"): per layer and K/V, the mean and
// the eigenvectors of the covariance of the channels, either over all KV
// heads at once (grouping "layer": one basis of kv_heads*head_dim channels)
// or per KV head (grouping "head": kv_heads bases of head_dim channels).
// Keys are taken before RoPE. Built once per model from calibration caches
// ("transform.basis", a section of the model's calibration file) or from the
// cache being encoded.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::codec::transform {

/// Name of the section of a model's calibration file (calibration_file.h)
/// that holds the bases.
inline constexpr const char* kSectionName = "transform.basis";

/// How channels are grouped into bases.
enum class Grouping : std::uint8_t { Layer = 0, Head = 1 };
const char* to_string(Grouping g);
/// "layer" or "head"; Error(InvalidArgument) otherwise.
Grouping grouping_from_string(const std::string& s);

/// One PCA basis over n channels.
struct GroupBasis {
  int n = 0;
  std::vector<float> mean;      ///< n channel means
  std::vector<float> variance;  ///< n eigenvalues (component variances), non-increasing, >= 0
  /// n x n, row j = unit eigenvector of component j over the group's
  /// channels (layer grouping: channel c = head*head_dim + dim; head
  /// grouping: c = dim). Rows are orthonormal up to float rounding.
  std::vector<float> vectors;
  const float* component(int j) const { return vectors.data() + std::size_t(j) * n; }
};

/// The bases of every (layer, kind, group) of one model for one grouping.
struct BasisSet {
  Grouping grouping = Grouping::Layer;
  int layers = 0, kv_heads = 0, head_dim = 0;
  std::uint64_t tokens = 0;  ///< calibration tokens the statistics came from
  /// Bases per (layer, kind): groups() of them; index (layer*2 + kind)*groups() + group.
  std::vector<GroupBasis> bases;

  int groups() const { return grouping == Grouping::Layer ? 1 : kv_heads; }
  int group_dim() const { return grouping == Grouping::Layer ? kv_heads * head_dim : head_dim; }
  const GroupBasis& at(int layer, kv::Kind kind, int group) const {
    return bases[(std::size_t(layer) * 2 + int(kind)) * groups() + group];
  }
};

/// What a "transform.basis" calibration section holds: one BasisSet per grouping.
struct Calibration {
  std::vector<BasisSet> sets;
  /// The set of this grouping, or nullptr.
  const BasisSet* find(Grouping g) const;
};

struct BuildOptions {
  /// Leading tokens of each cache left out of the statistics (attention
  /// sinks, which the codec keeps exact and whose outlier values would
  /// otherwise dominate the covariance).
  int skip_tokens = 1;
  int threads = 0;  ///< 0 = all hardware threads
  ProgressFn progress;
};

/// Mean and covariance of each group's channels over every token (after
/// skip_tokens) of `caches`, then its eigen-decomposition, for both
/// groupings. Keys must be before RoPE: Error(InvalidArgument) when a cache
/// has rope_applied set, when `caches` is empty, when shapes differ in
/// layers, kv_heads or head_dim, or when no token is left after skip_tokens.
Calibration build_calibration(std::span<const kv::KVCache> caches, const BuildOptions& options = {});

/// The bases of one grouping computed from a single cache (keys before RoPE;
/// `skip_tokens` leading tokens left out). Same errors as build_calibration.
BasisSet build_basis_set(const kv::KVCache& cache, Grouping grouping, int skip_tokens, int threads = 0);

/// Section payload bytes (docs/bitstream.md section 4, "transform.basis":
/// a u16 version, then the sets) and back.
/// parse_calibration throws Error(Format) naming `label` on any malformed
/// field: wrong sizes, a non-finite value, eigenvalues out of order.
std::vector<std::uint8_t> serialize_calibration(const Calibration& calibration);
Calibration parse_calibration(std::span<const std::uint8_t> bytes, const std::string& label);

/// Eigen-decomposition of the symmetric n x n matrix `a` (row-major, only
/// read) by Householder tridiagonalisation and implicit QL iterations in
/// double precision: `eigenvalues`
/// (n, non-increasing) and `vectors` (n x n, row j = unit eigenvector of
/// eigenvalue j, sign chosen so that its largest-magnitude entry is positive).
/// Deterministic. Error(InvalidArgument) on a size mismatch or a
/// non-finite entry; Error(Internal) if the iteration fails to converge.
void symmetric_eigen(int n, std::span<const double> a, std::span<double> eigenvalues,
                     std::span<double> vectors);

}  // namespace kvscope::codec::transform
