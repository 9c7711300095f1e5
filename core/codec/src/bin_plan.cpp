// SPDX-License-Identifier: Apache-2.0
// Bin plans from measured layer sensitivity (kvscope/codec/bin_plan.h).
#include "kvscope/codec/bin_plan.h"

#include <algorithm>
#include <cmath>

#include "byte_io.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/common/paths.h"

namespace kvscope::codec {

namespace {
constexpr std::uint16_t kSensitivityVersion = 1;
constexpr int kMaxLayers = 4096;
}  // namespace

std::vector<std::uint8_t> serialize_sensitivity(const LayerSensitivity& s) {
  std::vector<std::uint8_t> out;
  detail::ByteWriter w(out);
  w.u16(kSensitivityVersion);
  w.u32(std::uint32_t(s.layers));
  w.u16(std::uint16_t(s.base_bins));
  w.u16(std::uint16_t(s.coarse_bins));
  w.f64(s.base_kl);
  for (const auto* v : {&s.key_kl, &s.value_kl})
    for (double x : *v) w.f64(x);
  w.str(s.params);
  w.u32(std::uint32_t(s.contexts.size()));
  for (const auto& c : s.contexts) w.str(c);
  w.u32(std::uint32_t(s.context_tokens));
  w.u32(std::uint32_t(s.scored_tokens));
  return out;
}

LayerSensitivity parse_sensitivity(std::span<const std::uint8_t> bytes, const std::string& label) {
  detail::ByteReader r(bytes, label + " (cachegen.sensitivity)");
  if (r.u16() != kSensitivityVersion) r.fail("unsupported sensitivity version");
  LayerSensitivity s;
  const std::uint32_t layers = r.u32();
  if (layers < 1 || layers > kMaxLayers) r.fail("layer count out of range");
  s.layers = int(layers);
  s.base_bins = r.u16();
  s.coarse_bins = r.u16();
  if (s.base_bins < 4 || s.base_bins > 256 || s.coarse_bins < 4 || s.coarse_bins >= s.base_bins)
    r.fail("bins out of range (need 4 <= coarse < base <= 256)");
  auto finite = [&](double x) {
    if (!std::isfinite(x)) r.fail("non-finite value");
    return x;
  };
  s.base_kl = finite(r.f64());
  for (auto* v : {&s.key_kl, &s.value_kl}) {
    v->resize(layers);
    for (double& x : *v) x = finite(r.f64());
  }
  s.params = r.str();
  const std::uint32_t n = r.u32();
  if (n > r.remaining() / 2) r.fail("context count exceeds the section");
  for (std::uint32_t i = 0; i < n; ++i) s.contexts.push_back(r.str());
  s.context_tokens = int(r.u32());
  s.scored_tokens = int(r.u32());
  if (!r.done()) r.fail("trailing bytes");
  return s;
}

LayerSensitivity load_sensitivity(const std::filesystem::path& path) {
  const std::string data = read_file(path.string());
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  if (!calibration::has_calibration_magic(bytes)) return parse_sensitivity(bytes, path.string());
  const auto file = calibration::parse(bytes, path.string());
  const auto* section = file.find(kSensitivitySection);
  if (!section)
    throw Error(ErrorCode::Format, path.string(),
                std::string("calibration has no '") + kSensitivitySection +
                    "' section (`kvscope-cli calibrate --sensitivity FILE` adds one)");
  return parse_sensitivity(*section, path.string() + " [" + kSensitivitySection + "]");
}

BinPlan plan_bins(const LayerSensitivity& s, double level) {
  if (s.layers < 1 || int(s.key_kl.size()) != s.layers || int(s.value_kl.size()) != s.layers ||
      s.coarse_bins < 4 || s.coarse_bins >= s.base_bins)
    throw Error(ErrorCode::InvalidArgument, "bin plan: the sensitivity is empty or inconsistent");
  if (!std::isfinite(level)) throw Error(ErrorCode::InvalidArgument, "bin plan: level is not finite");
  const double mb = s.base_bins / 2 - 1, mc = s.coarse_bins / 2 - 1;
  const double noise = 1.0 / (mc * mc) - 1.0 / (mb * mb);
  // Weights; a floor keeps noise-level (or negative) measurements from
  // starving a layer: 1% of the largest increase.
  double top = 0;
  for (const auto* v : {&s.key_kl, &s.value_kl})
    for (double x : *v) top = std::max(top, x);
  const double floor = top > 0 ? 0.01 * top : 1e-6;
  std::vector<double> w;
  for (const auto* v : {&s.key_kl, &s.value_kl})
    for (double x : *v) w.push_back(std::max(x, floor) / noise);
  double log_mean = 0;
  for (double x : w) log_mean += std::log2(x);
  log_mean /= double(w.size());
  BinPlan plan;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double m = std::exp2(level + 0.5 * (std::log2(w[i]) - log_mean));
    const int M = int(std::clamp(std::nearbyint(m), 1.0, 127.0));
    (i < std::size_t(s.layers) ? plan.key_bins : plan.value_bins).push_back(2 * (M + 1));
  }
  return plan;
}

ParamSet plan_params(const BinPlan& plan) {
  auto join = [](const std::vector<int>& v) {
    std::string t;
    for (std::size_t i = 0; i < v.size(); ++i) t += (i ? "," : "") + std::to_string(v[i]);
    return t;
  };
  return {{"key_bins", join(plan.key_bins)},
          {"key_layer_splits", ""},
          {"value_bins", join(plan.value_bins)},
          {"value_layer_splits", ""}};
}

BinPlan plan_for_budget(const kv::KVCache& cache, const ParamSet& base, const LayerSensitivity& s,
                        double target_bits, const EncodeOptions& options) {
  if (cache.shape().layers != s.layers)
    throw Error(ErrorCode::InvalidArgument, "bin plan: the sensitivity was measured on " +
                                                std::to_string(s.layers) + " layers, the cache has " +
                                                std::to_string(cache.shape().layers));
  const Codec& cachegen = find_codec("cachegen");
  auto bits_at = [&](double level) {
    ParamSet p = base;
    for (auto& [k, v] : plan_params(plan_bins(s, level))) p[k] = v;
    return cachegen.encode(cache, p, options).size.bits_per_element();
  };
  // Bits grow with level; bisect for the largest level within the target.
  double lo = -3.0, hi = 7.0;
  if (bits_at(lo) > target_bits) return plan_bins(s, lo);
  for (int i = 0; i < 12; ++i) {
    const double mid = 0.5 * (lo + hi);
    (bits_at(mid) <= target_bits ? lo : hi) = mid;
  }
  return plan_bins(s, lo);
}

}  // namespace kvscope::codec
