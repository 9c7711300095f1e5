// SPDX-License-Identifier: Apache-2.0
#include "kvscope/kv/stats.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "kvscope/common/error.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::kv {

std::string_view to_string(Series series) {
  switch (series) {
    case Series::Raw:
      return "raw";
    case Series::AnchorDelta:
      return "anchor_delta";
    case Series::PrevDelta:
      return "prev_delta";
  }
  return "unknown";
}

double entropy_bits(std::span<const std::uint64_t> counts) {
  std::uint64_t total = 0;
  for (auto c : counts) total += c;
  if (total == 0) return 0.0;
  double h = 0;
  for (auto c : counts) {
    if (c == 0) continue;
    const double p = double(c) / double(total);
    h -= p * std::log2(p);
  }
  return h;
}

namespace {

double pearson_adjacent(const double* x, int tokens) {
  if (tokens < 2) return 0.0;
  const int n = tokens - 1;
  double ma = 0, mb = 0;
  for (int t = 0; t < n; ++t) {
    ma += x[t];
    mb += x[t + 1];
  }
  ma /= n;
  mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (int t = 0; t < n; ++t) {
    const double a = x[t] - ma, b = x[t + 1] - mb;
    sab += a * b;
    saa += a * a;
    sbb += b * b;
  }
  if (!(saa > 0) || !(sbb > 0)) return 0.0;
  return sab / std::sqrt(saa * sbb);
}

// Copies head `h` of a [heads, tokens, dim] tensor into buf as [dim][tokens] doubles.
void transpose_head(std::span<const float> tensor, int h, int tokens, int dim, std::vector<double>& buf) {
  buf.resize(std::size_t(tokens) * dim);
  const float* base = tensor.data() + std::size_t(h) * tokens * dim;
  for (int t = 0; t < tokens; ++t) {
    const float* row = base + std::size_t(t) * dim;
    for (int d = 0; d < dim; ++d) buf[std::size_t(d) * tokens + t] = row[d];
  }
}

// Calls f(v) for every value of one series of a channel's values `x`.
template <class F>
inline void for_each_in_series(const double* x, int tokens, int group_size, Series series, F&& f) {
  switch (series) {
    case Series::Raw:
      for (int t = 0; t < tokens; ++t) f(x[t]);
      break;
    case Series::AnchorDelta:
      for (int a = 0; a < tokens; a += group_size) {
        const int end = std::min(tokens, a + group_size);
        for (int t = a + 1; t < end; ++t) f(x[t] - x[a]);
      }
      break;
    case Series::PrevDelta:
      for (int t = 1; t < tokens; ++t) f(x[t] - x[t - 1]);
      break;
  }
}

// Bin index with a precomputed scale = bins / (hi - lo) (0 when hi == lo).
inline std::size_t bin_scaled(double v, double lo, double scale, std::size_t bins) {
  const double f = (v - lo) * scale;
  if (!(f > 0)) return 0;  // also catches NaN
  const auto b = static_cast<std::size_t>(f);
  return b >= bins ? bins - 1 : b;
}

inline double bin_scale(double lo, double hi, std::size_t bins) {
  return hi > lo ? double(bins) / (hi - lo) : 0.0;
}

// Round half to even without a libm call: adding and subtracting 1.5 * 2^52
// rounds in the default IEEE mode (exact for |v| < 2^51; symbols are far smaller,
// and the caller clamps them, which also absorbs float slack).
inline long round_half_even(double v) {
  constexpr double kMagic = 6755399441055744.0;
  if (!(std::fabs(v) < 1e15))
    return v > 0 ? std::numeric_limits<int>::max() : std::numeric_limits<int>::min();
  const double r = v + kMagic;  // IEEE semantics (no -ffast-math) keep this pair from folding
  return static_cast<long>(r - kMagic);
}

// Per-series running sums of one channel (central around the channel mean).
struct Central {
  std::uint64_t n = 0;
  double mean = 0, m2 = 0, m3 = 0, m4 = 0;
};

TensorStats tensor_stats(const KVCache& cache, int layer, Kind kind, const StatsConfig& cfg) {
  const CacheShape& s = cache.shape();
  const int T = s.tokens, D = s.head_dim, C = s.channels(), G = cfg.group_size;
  const auto tensor = cache.tensor(layer, kind);
  const int max_raw_symbol = cfg.entropy_bins / 2 - 1;
  const std::size_t hbins = std::size_t(cfg.histogram_bins);

  TensorStats ts;
  ts.layer = layer;
  ts.kind = kind;
  ts.channels.resize(std::size_t(C));
  std::vector<Central> central(std::size_t(C) * 3);

  // Pass A: count, sum and range of every series of every channel (cheap, nothing stored).
  std::vector<double> buf;
  std::array<double, 3> sum{}, lo{}, hi{};
  std::array<std::uint64_t, 3> count{};
  lo.fill(std::numeric_limits<double>::infinity());
  hi.fill(-std::numeric_limits<double>::infinity());
  for (int h = 0; h < s.kv_heads && T > 0; ++h) {
    transpose_head(tensor, h, T, D, buf);
    for (int d = 0; d < D; ++d) {
      const double* x = buf.data() + std::size_t(d) * T;
      const int c = h * D + d;
      ChannelStats& ch = ts.channels[std::size_t(c)];
      for (Series se : kSeries) {
        const int i = int(se);
        double cs = 0, cmin = std::numeric_limits<double>::infinity(), cmax = -cmin;
        std::uint64_t n = 0;
        for_each_in_series(x, T, G, se, [&](double v) {
          cs += v;
          cmin = std::min(cmin, v);
          cmax = std::max(cmax, v);
          ++n;
        });
        Moments& m = ch.moments[std::size_t(i)];
        m.count = n;
        if (n == 0) continue;
        m.mean = cs / double(n);
        m.min = cmin;
        m.max = cmax;
        count[std::size_t(i)] += n;
        sum[std::size_t(i)] += cs;
        lo[std::size_t(i)] = std::min(lo[std::size_t(i)], cmin);
        hi[std::size_t(i)] = std::max(hi[std::size_t(i)], cmax);
      }
    }
  }
  std::array<double, 3> tmean{};
  std::array<double, 3> tscale{};
  for (int i = 0; i < 3; ++i) {
    const auto u = std::size_t(i);
    if (!count[u]) lo[u] = hi[u] = 0;
    tmean[u] = count[u] ? sum[u] / double(count[u]) : 0.0;
    ts.histograms[u].lo = lo[u];
    ts.histograms[u].hi = hi[u];
    ts.histograms[u].counts.assign(hbins, 0);
    tscale[u] = bin_scale(lo[u], hi[u], hbins);
  }

  // Pass B: central moments, histograms and entropy symbols, fused in one loop per series.
  std::vector<std::uint64_t> sym;
  for (int h = 0; h < s.kv_heads && T > 0; ++h) {
    transpose_head(tensor, h, T, D, buf);
    for (int d = 0; d < D; ++d) {
      const double* x = buf.data() + std::size_t(d) * T;
      const int c = h * D + d;
      ChannelStats& ch = ts.channels[std::size_t(c)];
      const double absmax = ch.moments[0].absmax();
      const double inv_step = absmax > 0 && max_raw_symbol > 0 ? double(max_raw_symbol) / absmax : 0.0;
      for (Series se : kSeries) {
        const auto i = std::size_t(int(se));
        Moments& m = ch.moments[i];
        if (m.count == 0) continue;
        const int max_symbol = se == Series::Raw ? max_raw_symbol : 2 * max_raw_symbol;
        sym.assign(std::size_t(2 * max_symbol + 1), 0);
        const bool chist = cfg.channel_histograms;
        if (chist) ch.histograms[i] = Histogram{m.min, m.max, std::vector<std::uint64_t>(hbins, 0)};
        auto* ccounts = chist ? ch.histograms[i].counts.data() : nullptr;
        const double cscale = bin_scale(m.min, m.max, hbins);
        auto* tcounts = ts.histograms[i].counts.data();
        const double mean = m.mean, clo = m.min, tlo = lo[i], ts_scale = tscale[i];
        double m2 = 0, m3 = 0, m4 = 0;
        for_each_in_series(x, T, G, se, [&](double v) {
          const double dv = v - mean, d2 = dv * dv;
          m2 += d2;
          m3 += d2 * dv;
          m4 += d2 * d2;
          ++tcounts[bin_scaled(v, tlo, ts_scale, hbins)];
          if (ccounts) ++ccounts[bin_scaled(v, clo, cscale, hbins)];
          if (inv_step > 0) {
            const long q = std::clamp<long>(round_half_even(v * inv_step), -max_symbol, max_symbol);
            ++sym[std::size_t(q + max_symbol)];
          }
        });
        const double n = double(m.count);
        m.std = std::sqrt(m2 / n);
        m.kurtosis = m2 > 0 ? (m4 / n) / ((m2 / n) * (m2 / n)) - 3.0 : 0.0;
        ch.entropy_bits[i] = inv_step > 0 ? entropy_bits(sym) : 0.0;
        central[std::size_t(c) * 3 + i] = Central{m.count, mean, m2, m3, m4};
      }
      ch.adjacent_correlation = pearson_adjacent(x, T);
    }
  }

  // Tensor moments from the channels' central sums, shifted to the tensor mean:
  // sum (x - mu)^k = sum ((x - m) + delta)^k with delta = m - mu, and sum (x - m) = 0.
  for (int i = 0; i < 3; ++i) {
    const auto u = std::size_t(i);
    Moments& m = ts.moments[u];
    m.count = count[u];
    m.mean = tmean[u];
    m.min = lo[u];
    m.max = hi[u];
    if (!count[u]) continue;
    double M2 = 0, M4 = 0;
    for (int c = 0; c < C; ++c) {
      const Central& k = central[std::size_t(c) * 3 + u];
      if (k.n == 0) continue;
      const double dl = k.mean - tmean[u], dl2 = dl * dl, n = double(k.n);
      M2 += k.m2 + n * dl2;
      M4 += k.m4 + 4 * dl * k.m3 + 6 * dl2 * k.m2 + n * dl2 * dl2;
    }
    const double v2 = M2 / double(count[u]), v4 = M4 / double(count[u]);
    m.std = std::sqrt(v2);
    m.kurtosis = v2 > 0 ? v4 / (v2 * v2) - 3.0 : 0.0;
  }

  // Channel means of entropy and correlation; outlier rule on raw absmax.
  if (C > 0) {
    std::vector<double> absmax;
    absmax.reserve(std::size_t(C));
    double corr = 0;
    std::array<double, 3> ent{};
    for (const auto& ch : ts.channels) {
      absmax.push_back(ch.moments[0].absmax());
      corr += ch.adjacent_correlation;
      for (std::size_t i = 0; i < 3; ++i) ent[i] += ch.entropy_bits[i];
    }
    ts.adjacent_correlation = corr / C;
    for (std::size_t i = 0; i < 3; ++i) ts.entropy_bits[i] = ent[i] / C;
    std::vector<double> sorted = absmax;
    std::sort(sorted.begin(), sorted.end());
    const auto half = std::size_t(C / 2);
    ts.median_channel_absmax = C % 2 ? sorted[half] : 0.5 * (sorted[half - 1] + sorted[half]);
    if (T > 0) {
      for (int c = 0; c < C; ++c) {
        if (absmax[std::size_t(c)] > cfg.outlier_factor * ts.median_channel_absmax) {
          ts.channels[std::size_t(c)].outlier = true;
          ts.outlier_channels.push_back(c);
        }
      }
    }
  }
  return ts;
}

}  // namespace

CacheStats compute_stats(const KVCache& cache, const StatsConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  require(config.histogram_bins >= 1 && config.histogram_bins <= 65536, ErrorCode::InvalidArgument,
          "stats: histogram_bins must be in 1..65536, got " + std::to_string(config.histogram_bins));
  require(config.entropy_bins >= 4 && config.entropy_bins <= 65536, ErrorCode::InvalidArgument,
          "stats: entropy_bins must be in 4..65536, got " + std::to_string(config.entropy_bins));
  require(config.group_size >= 1, ErrorCode::InvalidArgument,
          "stats: group_size must be >= 1, got " + std::to_string(config.group_size));
  require(config.outlier_factor > 0 && std::isfinite(config.outlier_factor), ErrorCode::InvalidArgument,
          "stats: outlier_factor must be a positive number");

  const CacheShape& s = cache.shape();
  CacheStats out;
  out.shape = s;
  out.histogram_bins = config.histogram_bins;
  out.entropy_bins = config.entropy_bins;
  out.group_size = config.group_size;
  out.outlier_factor = config.outlier_factor;
  const std::size_t n = std::size_t(s.layers) * 2;
  out.tensors.resize(n);

  report_progress(config.progress, 0.0, "statistics");
  std::atomic<std::size_t> done{0};
  parallel_for(n, config.threads, [&](std::size_t i) {
    out.tensors[i] = tensor_stats(cache, int(i / 2), kKinds[i % 2], config);
    const std::size_t k = ++done;
    report_progress(config.progress, double(k) / double(n),
                    "statistics: tensor " + std::to_string(k) + "/" + std::to_string(n));
  });

  for (int kind = 0; kind < 2; ++kind) {
    for (int i = 0; i < 3; ++i) {
      double acc = 0;
      for (int l = 0; l < s.layers; ++l)
        acc += out.tensors[std::size_t(l) * 2 + kind].entropy_bits[std::size_t(i)];
      out.mean_entropy_bits[std::size_t(kind)][std::size_t(i)] = s.layers ? acc / s.layers : 0.0;
    }
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace kvscope::kv
