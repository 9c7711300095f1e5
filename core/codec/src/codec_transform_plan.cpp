// SPDX-License-Identifier: Apache-2.0
// `transform` codec: rate control. Reverse water-filling under the bit
// budget, on a sample of the cache's own coefficients: one water level theta
// for the whole cache; each (layer, kind, group) quantizes every coded
// component with the step sqrt(12 theta / weight), the weight making errors
// relative to the (layer, kind)'s mean power (with entropy coding,
// equal steps are the MSE-optimal allocation: the bits follow each
// component's variance), and a component is coded only when the distortion
// it removes is worth its bits at the level's slope (components below the
// water level get zero bits). The budget fixes theta by bisection.
#include <algorithm>
#include <cmath>

#include "codec_transform.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"
#include "transform_kernels.h"
#include "transform_model.h"

namespace kvscope::codec::detail::transform {

namespace {

constexpr int kSampleTokens = 512;
constexpr int kBisectionSteps = 24;

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) v >>= 7, ++n;
  return n;
}

std::uint64_t zigzag(std::int64_t v) {
  return v < 0 ? (std::uint64_t(-(v + 1)) << 1) | 1 : std::uint64_t(v) << 1;
}

// One group's sampled coefficients, [sample][component], with their moments.
struct Sample {
  int n = 0, count = 0;
  std::vector<float> y;
  std::vector<double> mean, power, max_abs;  // per component: E[y], E[y^2], max |y|
};

struct ComponentCost {
  bool coded = false;
  double bits_per_token = 0;   // model + low bits, per coded token
  std::size_t side_bytes = 0;  // per chunk
};

// What coding component j of `s` at step `step` costs and saves, per sample token.
void component_cost(const Sample& s, int j, double step, double deadzone, double& bits, double& distortion,
                    std::size_t& side_bytes) {
  std::uint64_t counts[alphabet(kMaxClasses)] = {};
  const double inv = 1.0 / step;
  const double center = round_even(std::clamp(s.mean[j] * inv, -double(1 << 20), double(1 << 20)));
  double err = 0, abs_sum = 0, low_bits = 0;
  std::uint32_t max_abs = 0;
  for (int t = 0; t < s.count; ++t) {
    const double y = s.y[std::size_t(t) * s.n + j];
    const int d = quantize_offset(y * inv, center, deadzone);
    const double e = y - (center + d) * step;
    err += e * e;
    const std::uint32_t mag = std::uint32_t(d < 0 ? -d : d);
    max_abs = std::max(max_abs, mag);
    abs_sum += double(mag);
    const int sym = symbol_of(int(d));
    ++counts[sym];
    if (sym > 0) low_bits += double((sym - 1) >> 1);
  }
  const int classes = classes_for(max_abs);
  const std::uint16_t rho = rho_estimate(abs_sum / s.count);
  bits = (model_cost_bits({counts, std::size_t(alphabet(classes))}, rho, classes) + low_bits) / s.count;
  distortion = err / s.count;
  side_bytes = 4 + varint_size(zigzag(std::int64_t(center)));
}

// Query weighting (docs/bitstream.md, "transform", layout version 2): the
// f16 step scale of every component of group gi, 1 / sqrt(gamma_j) with
// gamma_j = sum_c w_c u_j[c]^2, w the channel weights raised to `power` and
// normalised to mean 1 over the group's channels (so an unweighted group has
// gamma = 1 for every unit-norm component).
std::vector<std::uint16_t> component_scales(const GroupBasis& b, std::span<const float> weights,
                                            double power) {
  const int n = b.n;
  double mean = 0;
  for (float x : weights) mean += x;
  mean = std::max(mean / double(std::max<std::size_t>(weights.size(), 1)), 1e-30);
  const double floor = 1e-4 * mean;
  std::vector<double> w(n);
  double wsum = 0;
  for (int c = 0; c < n; ++c) wsum += w[c] = std::pow(std::max<double>(weights[c], floor) / mean, power);
  for (auto& x : w) x *= double(n) / wsum;
  std::vector<std::uint16_t> scale(n);
  for (int j = 0; j < n; ++j) {
    const float* u = b.component(j);
    double gamma = 0;
    for (int c = 0; c < n; ++c) gamma += w[c] * double(u[c]) * double(u[c]);
    scale[j] = float_to_half(float(1.0 / std::sqrt(std::clamp(gamma, 1e-4, 1e4))));
  }
  return scale;
}

}  // namespace

float GroupCode::component_step(int j) const {
  const float s = float(step);
  return scale.empty() ? s : s * half_to_float(scale[std::size_t(j)]);
}

std::size_t container_header_bytes(const Params& p, const kv::KVCache& cache, bool shipped) {
  std::size_t n = 16 + 2 + std::string(kName).size() + 2 + 2;
  for (const auto& [k, v] : p.values()) n += 4 + k.size() + v.size();
  n +=
      16 + 6 + cache.info.model_name.size() + cache.info.architecture.size() + cache.info.model_sha256.size();
  n += 1 + 8;
  const std::size_t T = std::size_t(cache.shape().tokens);
  n += 4 + (cache.info.token_ids.size() == T ? 4 * T : 0);
  n += 4 + (cache.info.positions.size() == T ? 4 * T : 0);
  n += 4 + (shipped ? 2 : 18) + 4;
  return n;
}

Decisions decide(const kv::KVCache& input, const Settings& s, const Bases& bases, std::size_t header_bytes,
                 int threads) {
  const int G = s.groups(), n = s.group_dim(), LK = s.layers * 2;
  const int chunks = chunk_count(s.tokens, s.chunk_tokens);
  std::vector<int> coded_tokens;
  for (int t = 0; t < s.tokens; ++t)
    if (!s.exact(t)) coded_tokens.push_back(t);
  const int exact_tokens = s.tokens - int(coded_tokens.size());
  const int S = std::min<int>(kSampleTokens, int(coded_tokens.size()));
  std::vector<int> sample(S);
  for (int i = 0; i < S; ++i) sample[i] = coded_tokens[std::size_t(i) * coded_tokens.size() / S];
  const bool ship = bases.shipped;

  // Sampled coefficients of every group.
  std::vector<Sample> samples(std::size_t(LK) * G);
  parallel_for(samples.size(), threads, [&](std::size_t gi) {
    const int lk = int(gi / G), g = int(gi % G);
    const GroupBasis& b = bases.set->bases[gi];
    Sample& sm = samples[gi];
    sm.n = n;
    sm.count = S;
    std::vector<float> x(std::size_t(S) * n), ut(std::size_t(n) * n);
    for (int j = 0; j < n; ++j)
      for (int c = 0; c < n; ++c) ut[std::size_t(c) * n + j] = b.vectors[std::size_t(j) * n + c];
    const float* tensor = input.tensor(lk / 2, kv::Kind(lk % 2)).data();
    for (int i = 0; i < S; ++i) {
      float* xi = x.data() + std::size_t(i) * n;
      gather_token(tensor, s, g, sample[i], xi);
      for (int c = 0; c < n; ++c) xi[c] -= b.mean[c];
    }
    sm.y.resize(std::size_t(S) * n);
    if (S > 0) matmul_rows(x.data(), n, S, n, ut.data(), n, n, sm.y.data(), n);
    if (s.value_gain > 0 && kv::Kind(lk % 2) == kv::Kind::Value)  // coded as the encoder will
      divide_by_gains(token_gains(x.data(), S, n, s.value_gain), n, sm.y.data());
    sm.mean.assign(n, 0.0);
    sm.power.assign(n, 0.0);
    sm.max_abs.assign(n, 0.0);
    for (int i = 0; i < S; ++i)
      for (int j = 0; j < n; ++j) {
        const double y = sm.y[std::size_t(i) * n + j];
        sm.mean[j] += y;
        sm.power[j] += y * y;
        sm.max_abs[j] = std::max(sm.max_abs[j], std::abs(y));
      }
    for (int j = 0; j < n; ++j) {
      sm.mean[j] /= std::max(1, S);
      sm.power[j] /= std::max(1, S);
    }
  });

  // Step scales of the query-weighted kinds (empty: one step for the group).
  std::vector<std::vector<std::uint16_t>> scales(samples.size());
  if (bases.weighting) {
    const auto& cw = *bases.weighting;
    const int C = cw.channels;
    for (std::size_t gi = 0; gi < samples.size(); ++gi) {
      const int lk = int(gi / G), g = int(gi % G);
      const double power = lk % 2 == 0 ? s.key_weighting : s.value_weighting;
      if (!(power > 0)) continue;
      const auto& all = lk % 2 == 0 ? cw.key_weight : cw.value_weight;
      const std::size_t first = std::size_t(lk / 2) * C + std::size_t(g) * n;  // group g's channels
      scales[gi] = component_scales(bases.set->bases[gi], std::span(all).subspan(first, n), power);
    }
  }

  // Distortion weights: relative error per (layer, kind) (a layer whose
  // values are 30x smaller is not 900x less important), times key_weight
  // for keys. Mean power per channel of each (layer, kind), from the sample.
  std::vector<double> layer_power(LK, 0.0);
  for (std::size_t gi = 0; gi < samples.size(); ++gi)
    for (int j = 0; j < n; ++j) layer_power[gi / G] += samples[gi].power[j];
  for (auto& p : layer_power) p = std::max(p / (double(n) * G), 1e-30);
  auto weight = [&](std::size_t gi) {
    const std::size_t lk = gi / G;
    const double importance = s.layer_weights.empty() ? 1.0 : s.layer_weights[lk];
    return (lk % 2 == 0 ? s.key_weight : 1.0) * importance / layer_power[lk];
  };
  const double coded_count = double(coded_tokens.size());
  const double lambda_scale = std::log(2.0) / 6.0;  // slope of D(R) per step^2

  // Bytes that do not depend on theta.
  TransformPlan::Breakdown fixed;
  fixed.header = header_bytes + 24 * std::size_t(LK) * (chunks + (ship ? 1 : 0));
  fixed.exact = std::size_t(exact_tokens) * s.kv_heads * s.head_dim * 2 * LK;
  fixed.side = std::size_t(LK) * chunks * G * 5;  // component count and step per group and chunk
  if (s.value_gain > 0) fixed.side += std::size_t(s.layers) * G * coded_tokens.size() * 2;  // f16 gains
  if (ship) fixed.basis = std::size_t(LK) * G * (2 + 4 * std::size_t(n));

  // Cost of the whole cache at water level theta; fills decisions when asked.
  auto evaluate = [&](double theta, Decisions* out) {
    std::vector<TransformPlan::Breakdown> per(samples.size());
    if (out) out->groups.assign(samples.size(), {});
    parallel_for(samples.size(), threads, [&](std::size_t gi) {
      const Sample& sm = samples[gi];
      GroupCode code;
      code.step = std::clamp(std::sqrt(12.0 * theta / weight(gi)), 1e-30, 4294967296.0);
      code.scale = scales[gi];
      if (out) {
        code.cache_variance = sm.power;
        code.bits_per_token.assign(n, 0.0);
      }
      // Every component of a version 2 or 3 stream has a step scale.
      const std::size_t scale_bytes = s.layout_version() >= kLayoutWeighted ? 2 : 0;
      int last = -1;
      for (int j = 0; j < n && S > 0; ++j) {
        if (sm.power[j] <= 0) continue;
        const double step = std::max<double>(code.component_step(j), 1e-30);
        const double lambda = lambda_scale * step * step;
        double bits, dist;
        std::size_t side;
        component_cost(sm, j, step, s.deadzone, bits, dist, side);
        side += scale_bytes;
        const double total_bits = bits * coded_count + 8.0 * double(side * chunks + (ship ? 2 * n : 0));
        if ((sm.power[j] - dist) * coded_count <= lambda * total_bits) continue;
        per[gi].payload += std::size_t(bits * coded_count / 8.0);
        per[gi].side += side * chunks;
        last = j;
        if (out) {
          code.components.push_back(j);
          code.bits_per_token[j] = bits;
        }
      }
      if (ship) per[gi].basis += std::size_t(last + 1) * n * 2;
      if (out) out->groups[gi] = std::move(code);
    });
    TransformPlan::Breakdown b = fixed;
    for (const auto& p : per) {
      b.payload += p.payload;
      b.side += p.side;
      b.basis += p.basis;
    }
    return b;
  };

  // Water levels from "every coefficient fits the magnitude classes" to "nothing coded".
  double lo = 0, hi = 0;
  for (std::size_t gi = 0; gi < samples.size(); ++gi)
    for (int j = 0; j < n; ++j) {
      const double scale = scales[gi].empty() ? 1.0 : double(half_to_float(scales[gi][j]));
      const double a = samples[gi].max_abs[j] / (30000.0 * scale);
      lo = std::max(lo, weight(gi) * a * a / 12.0);
      hi = std::max(hi, weight(gi) * samples[gi].power[j] * 1e4);
    }
  lo = std::max(lo, 1e-30);
  hi = std::max(hi, lo * 2);
  const double target = s.bits * double(std::size_t(s.tokens) * s.kv_heads * s.head_dim * LK) / 8.0;
  double theta;
  if (double(evaluate(lo, nullptr).total()) <= target) {
    theta = lo;
  } else if (double(evaluate(hi, nullptr).total()) >= target) {
    theta = hi;
  } else {
    double a = std::log(lo), z = std::log(hi);
    for (int i = 0; i < kBisectionSteps; ++i) {
      const double mid = 0.5 * (a + z);
      if (double(evaluate(std::exp(mid), nullptr).total()) > target)
        a = mid;
      else
        z = mid;
    }
    theta = std::exp(z);
  }
  Decisions d;
  d.water_level = theta;
  d.estimate = evaluate(theta, &d);
  return d;
}

}  // namespace kvscope::codec::detail::transform

namespace kvscope::codec::transform {

int GroupPlan::coded_components() const {
  return int(std::count_if(bits_per_token.begin(), bits_per_token.end(), [](double b) { return b > 0; }));
}

TransformPlan plan_transform(const kv::KVCache& cache, const ParamSet& params, int threads) {
  namespace dt = detail::transform;
  const detail::Params p(dt::kName, dt::param_specs(&cache.shape()), dt::resolve_weighting(params));
  detail::require_finite(cache, dt::kName);
  dt::Settings s = dt::make_settings(p, cache.shape());
  kv::KVCache storage;
  const kv::KVCache& input = dt::transform_input(cache, s, storage);
  const dt::Bases bases = dt::make_bases(input, s, threads);
  const dt::Decisions d =
      dt::decide(input, s, bases, dt::container_header_bytes(p, cache, bases.shipped), threads);
  TransformPlan plan;
  plan.grouping = s.grouping;
  plan.water_level = d.water_level;
  plan.key_weighting = s.key_weighting;
  plan.value_weighting = s.value_weighting;
  plan.value_gain = s.value_gain;
  plan.estimate = d.estimate;
  const std::size_t elements = cache.shape().elements();
  plan.bits_per_element = elements ? 8.0 * double(d.estimate.total()) / double(elements) : 0.0;
  const int G = s.groups();
  for (std::size_t gi = 0; gi < d.groups.size(); ++gi) {
    GroupPlan g;
    g.layer = int(gi / G / 2);
    g.kind = kv::Kind((gi / G) % 2);
    g.group = int(gi % G);
    g.step = d.groups[gi].step;
    for (int j = 0; j < int(d.groups[gi].cache_variance.size()); ++j)
      g.component_step.push_back(d.groups[gi].component_step(j));
    const auto& v = bases.set->bases[gi].variance;
    g.basis_variance.assign(v.begin(), v.end());
    g.cache_variance = d.groups[gi].cache_variance;
    g.bits_per_token = d.groups[gi].bits_per_token;
    plan.groups.push_back(std::move(g));
  }
  return plan;
}

}  // namespace kvscope::codec::transform
