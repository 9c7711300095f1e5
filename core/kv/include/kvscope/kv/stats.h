// SPDX-License-Identifier: Apache-2.0
#pragma once

// Statistics of a KV cache per (layer, K|V) tensor and per channel: what the
// GUI's distribution, locality and entropy views draw and what
// `kvscope-cli stats` prints. Pure C++ (no Qt, no libtorch).
//
// Definitions (docs and tests rely on these exact rules):
// - A channel is one (kv_head, dim) pair: c = head * head_dim + dim.
// - Three series are measured per channel, each over the token axis:
//     raw          x[t]                         for every token t
//     anchor_delta x[t] - x[a(t)]               for tokens that are not anchors;
//                  tokens are split into groups of `group_size` consecutive
//                  tokens and the anchor a(t) is the first token of t's group
//                  (CacheGen's token locality, docs/architecture.md)
//     prev_delta   x[t] - x[t-1]                for t >= 1
//   Deltas are computed in double from the float32 values.
// - Moments are population moments: std = sqrt(m2), kurtosis is the EXCESS
//   kurtosis m4 / m2^2 - 3 (0 for a normal distribution; 0 when m2 == 0).
// - Entropy: each channel has one symmetric uniform quantizer with
//   `entropy_bins` levels derived from its RAW values: M = entropy_bins / 2 - 1,
//   step = absmax_raw / M, q = round(v / step) (round half to even). This
//   per-channel step is a measurement choice of these statistics; it is
//   neither cachegen's default (one step per token, docs/bitstream.md) nor
//   LMCache's quantizer (one step per (layer, token) over all channels,
//   codec_lmcache.cpp). The SAME step is applied to raw values and to both
//   delta series, and delta symbols are not clamped (|q| <= 2M), so raw and
//   delta entropies are compared at equal quantization error. Entropy is the
//   empirical Shannon entropy of a channel's symbols in bits per symbol; a
//   tensor's entropy is the mean over its channels (the cost of coding with
//   one symbol model per (layer, kind, channel), as CacheGen does).
//   A channel whose raw values are all zero has entropy 0 for every series.
// - Outlier channels of a tensor: absmax_raw(channel) >
//   outlier_factor * median over the tensor's channels of absmax_raw.
// - Adjacent-token correlation of a channel: Pearson correlation of the pairs
//   (x[t], x[t+1]) for t = 0..T-2; 0 when either side has zero variance or
//   T < 2. A tensor's value is the mean over its channels.
// - Histograms: `histogram_bins` equal bins over [min, max] of the series
//   (tensor histograms over the tensor's range, channel histograms over the
//   channel's); value v goes to bin floor((v - lo) / (hi - lo) * bins),
//   clamped to [0, bins - 1]; all values land in bin 0 when hi == lo.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::kv {

/// The three per-channel series defined above.
enum class Series : int { Raw = 0, AnchorDelta = 1, PrevDelta = 2 };
inline constexpr std::array<Series, 3> kSeries = {Series::Raw, Series::AnchorDelta, Series::PrevDelta};
/// "raw", "anchor_delta", "prev_delta" (the JSON keys).
std::string_view to_string(Series series);

struct StatsConfig {
  int histogram_bins = 64;  ///< bins of every histogram, 1..65536
  int entropy_bins = 32;    ///< quantizer levels for entropy, 4..65536 (cachegen's default for early layers)
  int group_size = 10;      ///< tokens per anchor group, >= 1 (CacheGen uses about ten)
  double outlier_factor = 4.0;     ///< outlier rule threshold, > 0
  bool channel_histograms = true;  ///< also fill ChannelStats::histograms
  int threads = 0;                 ///< 0 = all hardware threads
  ProgressFn progress;             ///< called once per finished tensor (thread-safe); false cancels
};

struct Moments {
  std::uint64_t count = 0;
  double mean = 0, std = 0, min = 0, max = 0, kurtosis = 0;
  double absmax() const { return max > -min ? max : -min; }
};

struct Histogram {
  double lo = 0, hi = 0;
  std::vector<std::uint64_t> counts;
  double bin_width() const { return counts.empty() ? 0.0 : (hi - lo) / double(counts.size()); }
  double bin_center(std::size_t i) const { return lo + (double(i) + 0.5) * bin_width(); }
};

struct ChannelStats {
  std::array<Moments, 3> moments;        ///< by Series
  std::array<double, 3> entropy_bits{};  ///< by Series, bits per symbol
  std::array<Histogram, 3> histograms;   ///< by Series; empty unless StatsConfig::channel_histograms
  double adjacent_correlation = 0;
  bool outlier = false;
};

struct TensorStats {
  int layer = 0;
  Kind kind = Kind::Key;
  std::array<Moments, 3> moments;        ///< over all values of the series in the tensor
  std::array<Histogram, 3> histograms;   ///< over the tensor's range
  std::array<double, 3> entropy_bits{};  ///< mean of the channels' entropies
  double adjacent_correlation = 0;       ///< mean over channels
  double median_channel_absmax = 0;
  std::vector<int> outlier_channels;   ///< ascending channel indices
  std::vector<ChannelStats> channels;  ///< one per channel, index = channel
};

struct CacheStats {
  CacheShape shape;
  int histogram_bins = 0, entropy_bins = 0, group_size = 0;
  double outlier_factor = 0;
  /// One per (layer, kind), index layer * 2 + kind.
  std::vector<TensorStats> tensors;
  /// Mean over tensors of entropy_bits, separately for keys and values: [kind][series].
  std::array<std::array<double, 3>, 2> mean_entropy_bits{};
  double seconds = 0;  ///< wall time of compute_stats

  const TensorStats& tensor(int layer, Kind kind) const {
    return tensors[std::size_t(layer) * 2 + int(kind)];
  }
};

/// Computes every statistic above for `cache`. Tensors are processed in
/// parallel (kvscope::parallel_for). Throws Error(InvalidArgument) naming the
/// field when a config value is out of range, Error(Cancelled) when
/// `config.progress` returns false. An empty cache (no layers or no tokens)
/// gives tensors with zero counts.
CacheStats compute_stats(const KVCache& cache, const StatsConfig& config = {});

/// Empirical Shannon entropy in bits of a symbol histogram (zero counts ignored).
double entropy_bits(std::span<const std::uint64_t> counts);

}  // namespace kvscope::kv
