// SPDX-License-Identifier: Apache-2.0
// PCA bases for the `transform` codec: channel statistics, a symmetric
// eigen-solver (Householder tridiagonalisation, then implicit QL), and the "transform.basis" section body
// (docs/bitstream.md, section "transform").
#include "kvscope/codec/transform_basis.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>

#include "byte_io.h"
#include "kvscope/common/error.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::transform {

namespace {

constexpr std::uint16_t kSectionVersion = 1;

// Sums of one group's channels and of their pairwise products, in double.
struct Moments {
  int n = 0;
  std::uint64_t count = 0;
  std::vector<double> sum;  // n
  std::vector<double> sq;   // n x n, upper triangle (j >= i) filled
};

// Gathers token t of group g of (layer, kind) into x (n floats).
void gather(const kv::KVCache& cache, int layer, kv::Kind kind, Grouping grouping, int group, int t,
            float* x) {
  const auto& s = cache.shape();
  const float* base = cache.tensor(layer, kind).data();
  const int h0 = grouping == Grouping::Layer ? 0 : group;
  const int h1 = grouping == Grouping::Layer ? s.kv_heads : group + 1;
  for (int h = h0; h < h1; ++h) {
    const float* src = base + (std::size_t(h) * s.tokens + t) * s.head_dim;
    std::copy(src, src + s.head_dim, x + std::size_t(h - h0) * s.head_dim);
  }
}

// Adds tokens [skip, tokens) of every cache to the group's moments. Products
// are summed in float over blocks of tokens (vectorises), blocks in double.
void accumulate(std::span<const kv::KVCache> caches, int layer, kv::Kind kind, Grouping grouping, int group,
                int skip, Moments& m) {
  constexpr int kBlock = 64;
  const int n = m.n;
  std::vector<float> x(std::size_t(kBlock) * n), blk(std::size_t(n) * n);
  for (const auto& cache : caches) {
    const int T = cache.shape().tokens;
    for (int t0 = skip; t0 < T; t0 += kBlock) {
      const int b = std::min(kBlock, T - t0);
      for (int i = 0; i < b; ++i)
        gather(cache, layer, kind, grouping, group, t0 + i, x.data() + std::size_t(i) * n);
      std::fill(blk.begin(), blk.end(), 0.0f);
      for (int i = 0; i < b; ++i) {
        const float* xi = x.data() + std::size_t(i) * n;
        for (int r = 0; r < n; ++r) {
          m.sum[r] += xi[r];
          const float v = xi[r];
          float* row = blk.data() + std::size_t(r) * n;
          for (int c = r; c < n; ++c) row[c] += v * xi[c];
        }
      }
      for (int r = 0; r < n; ++r)
        for (int c = r; c < n; ++c) m.sq[std::size_t(r) * n + c] += blk[std::size_t(r) * n + c];
      m.count += std::uint64_t(b);
    }
  }
}

GroupBasis basis_from_moments(const Moments& m) {
  const int n = m.n;
  const double N = double(m.count);
  std::vector<double> mean(n), cov(std::size_t(n) * n);
  for (int i = 0; i < n; ++i) mean[i] = m.sum[i] / N;
  for (int r = 0; r < n; ++r)
    for (int c = r; c < n; ++c) {
      const double v = m.sq[std::size_t(r) * n + c] / N - mean[r] * mean[c];
      cov[std::size_t(r) * n + c] = cov[std::size_t(c) * n + r] = v;
    }
  std::vector<double> ev(n), vec(std::size_t(n) * n);
  symmetric_eigen(n, cov, ev, vec);
  GroupBasis b;
  b.n = n;
  b.mean.resize(n);
  b.variance.resize(n);
  b.vectors.resize(std::size_t(n) * n);
  for (int i = 0; i < n; ++i) {
    b.mean[i] = float(mean[i]);
    b.variance[i] = float(std::max(0.0, ev[i]));
  }
  // float rounding may swap nearly equal eigenvalues' order: keep it non-increasing.
  for (int i = 1; i < n; ++i) b.variance[i] = std::min(b.variance[i], b.variance[i - 1]);
  for (std::size_t i = 0; i < vec.size(); ++i) b.vectors[i] = float(vec[i]);
  return b;
}

void check_caches(std::span<const kv::KVCache> caches, int skip) {
  if (caches.empty())
    throw Error(ErrorCode::InvalidArgument, "transform calibration needs at least one cache");
  const auto& s0 = caches[0].shape();
  std::uint64_t usable = 0;
  for (const auto& c : caches) {
    const auto& s = c.shape();
    if (s.layers != s0.layers || s.kv_heads != s0.kv_heads || s.head_dim != s0.head_dim)
      throw Error(ErrorCode::InvalidArgument,
                  "transform calibration: caches differ in layers, kv_heads or head_dim");
    if (c.info.rope_applied)
      throw Error(ErrorCode::InvalidArgument,
                  "transform calibration needs keys before RoPE (a cache with rope_applied = false)");
    usable += std::uint64_t(std::max(0, s.tokens - skip));
  }
  if (usable < 2)
    throw Error(ErrorCode::InvalidArgument, "transform calibration: fewer than 2 tokens after the first " +
                                                std::to_string(skip) + " of each cache");
}

BasisSet build_set(std::span<const kv::KVCache> caches, Grouping grouping, int skip, int threads,
                   const ProgressFn& progress, double p0, double p1) {
  const auto& s = caches[0].shape();
  BasisSet set;
  set.grouping = grouping;
  set.layers = s.layers;
  set.kv_heads = s.kv_heads;
  set.head_dim = s.head_dim;
  const int G = set.groups(), n = set.group_dim();
  set.bases.resize(std::size_t(s.layers) * 2 * G);
  std::atomic<std::size_t> done{0};
  parallel_for(set.bases.size(), threads, [&](std::size_t i) {
    const int lk = int(i / G), g = int(i % G);
    Moments m;
    m.n = n;
    m.sum.assign(n, 0.0);
    m.sq.assign(std::size_t(n) * n, 0.0);
    accumulate(caches, lk / 2, kv::Kind(lk % 2), grouping, g, skip, m);
    set.bases[i] = basis_from_moments(m);
    const std::size_t d = ++done;
    report_progress(progress, p0 + (p1 - p0) * double(d) / double(set.bases.size()),
                    "transform basis (" + std::string(to_string(grouping)) + ")");
  });
  for (const auto& c : caches) set.tokens += std::uint64_t(std::max(0, c.shape().tokens - skip));
  return set;
}

}  // namespace

const char* to_string(Grouping g) {
  return g == Grouping::Layer ? "layer" : "head";
}

Grouping grouping_from_string(const std::string& s) {
  if (s == "layer") return Grouping::Layer;
  if (s == "head") return Grouping::Head;
  throw Error(ErrorCode::InvalidArgument, "transform basis grouping '" + s + "' is not 'layer' or 'head'");
}

const BasisSet* Calibration::find(Grouping g) const {
  for (const auto& s : sets)
    if (s.grouping == g) return &s;
  return nullptr;
}

void symmetric_eigen(int n, std::span<const double> a_in, std::span<double> eigenvalues,
                     std::span<double> vectors) {
  const std::size_t nn = std::size_t(n) * n;
  if (n < 1 || a_in.size() != nn || eigenvalues.size() != std::size_t(n) || vectors.size() != nn)
    throw Error(ErrorCode::InvalidArgument, "symmetric_eigen: size mismatch");
  for (double x : a_in)
    if (!std::isfinite(x)) throw Error(ErrorCode::InvalidArgument, "symmetric_eigen: non-finite entry");
  // 1. Householder tridiagonalisation A = Q T Q^T. `qt` holds Q^T (row i =
  //    column i of Q) so every update below runs over contiguous rows.
  std::vector<double> a(a_in.begin(), a_in.end()), qt(nn, 0.0), v(n), p(n), w(n);
  auto A = [&](int r, int c) -> double& { return a[std::size_t(r) * n + c]; };
  for (int i = 0; i < n; ++i) qt[std::size_t(i) * n + i] = 1.0;
  for (int k = 0; k + 2 < n; ++k) {
    double norm = 0;
    for (int r = k + 1; r < n; ++r) norm += A(r, k) * A(r, k);
    norm = std::sqrt(norm);
    if (norm == 0.0) continue;
    const double alpha = A(k + 1, k) > 0 ? -norm : norm;
    double vnorm = 0;
    for (int r = k + 1; r < n; ++r) {
      v[r] = A(r, k) - (r == k + 1 ? alpha : 0.0);
      vnorm += v[r] * v[r];
    }
    vnorm = std::sqrt(vnorm);
    if (vnorm == 0.0) continue;
    for (int r = k + 1; r < n; ++r) v[r] /= vnorm;
    // H = I - 2 v v^T on rows/columns k+1..n-1: A <- H A H = A - 2 v q^T - 2 q v^T,
    // p = A v, q = p - (v.p) v.
    double K = 0;
    for (int r = k + 1; r < n; ++r) {
      double acc = 0;
      for (int c = k + 1; c < n; ++c) acc += A(r, c) * v[c];
      p[r] = acc;
      K += v[r] * acc;
    }
    for (int r = k + 1; r < n; ++r) p[r] -= K * v[r];
    for (int r = k + 1; r < n; ++r)
      for (int c = k + 1; c < n; ++c) A(r, c) -= 2.0 * (v[r] * p[c] + p[r] * v[c]);
    A(k + 1, k) = A(k, k + 1) = alpha;
    for (int r = k + 2; r < n; ++r) A(r, k) = A(k, r) = 0.0;
    // Q <- Q H, i.e. Q^T <- H Q^T: rows k+1.. of Q^T minus 2 v (v^T Q^T).
    std::fill(w.begin(), w.end(), 0.0);
    for (int r = k + 1; r < n; ++r)
      for (int c = 0; c < n; ++c) w[c] += v[r] * qt[std::size_t(r) * n + c];
    for (int r = k + 1; r < n; ++r)
      for (int c = 0; c < n; ++c) qt[std::size_t(r) * n + c] -= 2.0 * v[r] * w[c];
  }
  // 2. Implicit QL with Wilkinson-style shifts on the tridiagonal (d, e),
  //    e[i] coupling d[i] and d[i+1]; the rotations update the eigenvector rows.
  std::vector<double> d(n), e(n, 0.0);
  for (int i = 0; i < n; ++i) d[i] = A(i, i);
  for (int i = 0; i + 1 < n; ++i) e[i] = A(i + 1, i);
  for (int l = 0; l < n; ++l) {
    for (int iter = 0;; ++iter) {
      int m = l;
      for (; m + 1 < n; ++m) {
        const double dd = std::abs(d[m]) + std::abs(d[m + 1]);
        if (std::abs(e[m]) <= 1e-16 * dd) break;
      }
      if (m == l) break;
      if (iter == 64) throw Error(ErrorCode::Internal, "symmetric_eigen: no convergence");
      double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
      double r = std::hypot(g, 1.0);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      double s = 1, c = 1, shift = 0;
      int i = m - 1;
      for (; i >= l; --i) {
        const double f = s * e[i], b = c * e[i];
        r = std::hypot(f, g);
        e[i + 1] = r;
        if (r == 0.0) {
          d[i + 1] -= shift;
          e[m] = 0.0;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - shift;
        r = (d[i] - g) * s + 2.0 * c * b;
        shift = s * r;
        d[i + 1] = g + shift;
        g = c * r - b;
        double* zi = qt.data() + std::size_t(i) * n;
        double* zj = zi + n;
        for (int k = 0; k < n; ++k) {
          const double t = zj[k];
          zj[k] = s * zi[k] + c * t;
          zi[k] = c * zi[k] - s * t;
        }
      }
      if (r == 0.0 && i >= l) continue;
      d[l] -= shift;
      e[l] = g;
      e[m] = 0.0;
    }
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return d[x] > d[y]; });
  for (int j = 0; j < n; ++j) {
    const double* src = qt.data() + std::size_t(order[j]) * n;
    eigenvalues[j] = d[order[j]];
    int big = 0;
    for (int r = 1; r < n; ++r)
      if (std::abs(src[r]) > std::abs(src[big])) big = r;
    const double sign = src[big] < 0 ? -1.0 : 1.0;
    for (int r = 0; r < n; ++r) vectors[std::size_t(j) * n + r] = sign * src[r];
  }
}

BasisSet build_basis_set(const kv::KVCache& cache, Grouping grouping, int skip_tokens, int threads) {
  std::span<const kv::KVCache> one(&cache, 1);
  check_caches(one, skip_tokens);
  return build_set(one, grouping, skip_tokens, threads, {}, 0, 1);
}

Calibration build_calibration(std::span<const kv::KVCache> caches, const BuildOptions& options) {
  check_caches(caches, options.skip_tokens);
  Calibration cal;
  cal.sets.push_back(
      build_set(caches, Grouping::Layer, options.skip_tokens, options.threads, options.progress, 0.0, 0.8));
  cal.sets.push_back(
      build_set(caches, Grouping::Head, options.skip_tokens, options.threads, options.progress, 0.8, 1.0));
  return cal;
}

std::vector<std::uint8_t> serialize_calibration(const Calibration& cal) {
  std::vector<std::uint8_t> out;
  detail::ByteWriter w(out);
  w.u16(kSectionVersion);
  w.u8(std::uint8_t(cal.sets.size()));
  for (const auto& s : cal.sets) {
    w.u8(std::uint8_t(s.grouping));
    w.u32(std::uint32_t(s.layers));
    w.u32(std::uint32_t(s.kv_heads));
    w.u32(std::uint32_t(s.head_dim));
    w.u64(s.tokens);
    for (const auto& b : s.bases) {
      for (float x : b.mean) w.f32(x);
      for (float x : b.variance) w.f32(x);
      for (float x : b.vectors) w.f32(x);
    }
  }
  return out;
}

Calibration parse_calibration(std::span<const std::uint8_t> bytes, const std::string& label) {
  detail::ByteReader r(bytes, label + " (transform.basis)");
  if (r.u16() != kSectionVersion)
    throw Error(ErrorCode::Unsupported, label + ": unsupported transform.basis section version");
  const int count = r.u8();
  if (count < 1 || count > 2) r.fail("needs one or two basis sets");
  Calibration cal;
  for (int i = 0; i < count; ++i) {
    BasisSet s;
    const std::uint8_t g = r.u8();
    if (g > 1) r.fail("unknown grouping");
    s.grouping = Grouping(g);
    if (cal.find(s.grouping)) r.fail("grouping listed twice");
    s.layers = int(r.u32());
    s.kv_heads = int(r.u32());
    s.head_dim = int(r.u32());
    s.tokens = r.u64();
    if (s.layers < 1 || s.layers > 4096 || s.kv_heads < 1 || s.head_dim < 1 ||
        std::uint64_t(s.kv_heads) * std::uint64_t(s.head_dim) > 4096)
      r.fail("basis shape out of range");
    const int n = s.group_dim();
    const std::size_t per = (std::size_t(n) * n + 2 * std::size_t(n)) * 4;
    const std::size_t bases = std::size_t(s.layers) * 2 * s.groups();
    if (r.remaining() / per < bases) r.fail("section too short for its basis shape");
    s.bases.resize(bases);
    for (auto& b : s.bases) {
      b.n = n;
      b.mean.resize(n);
      b.variance.resize(n);
      b.vectors.resize(std::size_t(n) * n);
      for (auto& x : b.mean) x = r.f32();
      for (auto& x : b.variance) x = r.f32();
      for (auto& x : b.vectors) x = r.f32();
      for (int j = 0; j < n; ++j)
        if (!std::isfinite(b.mean[j]) || !std::isfinite(b.variance[j]) || b.variance[j] < 0 ||
            (j > 0 && b.variance[j] > b.variance[j - 1]))
          r.fail("mean or variances not finite, negative or out of order");
      for (float x : b.vectors)
        if (!std::isfinite(x) || std::abs(x) > 1.0f) r.fail("basis vector entry out of range");
    }
    cal.sets.push_back(std::move(s));
  }
  if (!r.done()) r.fail("trailing bytes");
  return cal;
}

}  // namespace kvscope::codec::transform
