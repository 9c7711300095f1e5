// SPDX-License-Identifier: Apache-2.0
// `transform` codec: parameters, the calibration it reads, and the basis
// each group is coded with (docs/bitstream.md, "transform").
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <optional>
#include <sstream>

#include "codec_transform.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/paths.h"
#include "kvscope/kv/rope.h"

namespace kvscope::codec::detail::transform {

std::vector<ParamSpec> param_specs(const kv::CacheShape*) {
  using T = ParamSpec::Type;
  return {
      chunk_tokens_spec(1024),
      {"bits",
       T::Float,
       "2",
       0.05,
       16,
       {},
       "budget in bits per element, every header, basis and side information included"},
      {"basis",
       T::Choice,
       "auto",
       0,
       0,
       {"auto", "calibration", "cache"},
       "where the PCA basis comes from: the model's calibration file, or this cache (then shipped in the "
       "stream); auto = the calibration when one is given, else this cache"},
      {"calibration",
       T::Text,
       "",
       0,
       0,
       {},
       "the model's calibration file (make one with kvscope-cli calibrate); used by basis=calibration and "
       "auto"},
      {"grouping",
       T::Choice,
       "layer",
       0,
       0,
       {"layer", "head"},
       "one basis per layer and K/V over every KV head's channels, or one per KV head"},
      {"sink_tokens", T::Int, "4", 0, 1 << 24, {}, "first tokens stored exactly (fp16): attention sinks"},
      {"recent_tokens", T::Int, "0", 0, 1 << 24, {}, "last tokens stored exactly (fp16)"},
      {"key_weight",
       T::Float,
       "0.2",
       0.01,
       100,
       {},
       "weight of key errors relative to value errors in the bit allocation (> 1: finer keys)"},
      {"deadzone",
       T::Float,
       "0",
       0,
       0.45,
       {},
       "encoder rounding dead zone in steps: coefficients within 0.5 + deadzone of the center code as 0 "
       "(fewer nonzero symbols for more error; 0 = plain rounding)"},
      {"key_weighting",
       T::Float,
       "1",
       0,
       2,
       {},
       "query weighting of keys: exponent p on the calibration's measured key channel weights (how strongly "
       "the queries read each channel); a component's step shrinks as its weighted energy sum_c w_c^p u_c^2 "
       "grows. 0 = off. Applies when the calibration file carries the model's channel weights; without "
       "them the stream is unweighted and its header says key_weighting=0"},
      {"value_weighting",
       T::Float,
       "0",
       0,
       2,
       {},
       "the same for values, with the output projection's measured channel weights; 0 = off"},
      {"value_gain",
       T::Float,
       "1",
       0,
       2,
       {},
       "per-token gain of values: each coded token's value coefficients are divided by (its squared "
       "distance to the basis mean / the chunk's mean of those)^(value_gain/2), so tokens near the mean get "
       "finer steps (1: the same error relative to each token's size); one f16 gain per token and group "
       "travels in the stream (layout version 3). 0 = off: the same absolute error for every token"},
      {"layer_weights",
       T::Text,
       "",
       0,
       0,
       {},
       "importance of each layer's relative error, 2 x layers numbers (layer 0 keys, layer 0 values, layer 1 "
       "keys, ...); empty = all equal"},
      {"key_rope",
       T::Choice,
       "remove",
       0,
       0,
       {"remove", "keep"},
       "code keys before RoPE (undone before the transform, re-applied at each token's position after "
       "decoding) or as stored"},
  };
}

ParamSet resolve_weighting(ParamSet params) {
  bool have = false;
  if (const auto cal = params.find("calibration"); cal != params.end() && !cal->second.empty()) {
    try {
      have = load_calibration_file(cal->second).weighting != nullptr;
    } catch (const Error&) {
      return params;  // unreadable: the encoder reports it
    }
  }
  if (!have) params["key_weighting"] = params["value_weighting"] = "0";
  return params;
}

Settings make_settings(const Params& p, const kv::CacheShape& shape) {
  Settings s;
  const std::string& basis = p.get("basis");
  s.source = basis == "cache"         ? Settings::Source::Cache
             : basis == "calibration" ? Settings::Source::Calibration
                                      : Settings::Source::Auto;
  s.grouping = codec::transform::grouping_from_string(p.get("grouping"));
  s.chunk_tokens = p.get_int("chunk_tokens");
  s.sink_tokens = p.get_int("sink_tokens");
  s.recent_tokens = p.get_int("recent_tokens");
  s.remove_rope = p.get("key_rope") == "remove";
  s.bits = p.get_float("bits");
  s.key_weight = p.get_float("key_weight");
  s.deadzone = p.get_float("deadzone");
  s.key_weighting = p.get_float("key_weighting");
  s.value_weighting = p.get_float("value_weighting");
  s.value_gain = p.get_float("value_gain");
  if (const std::string& w = p.get("layer_weights"); !w.empty()) {
    std::stringstream in(w);
    std::string item;
    while (std::getline(in, item, ',')) {
      double v = 0;
      try {
        std::size_t used = 0;
        v = std::stod(item, &used);
        if (item.find_first_not_of(" \t", used) != std::string::npos) v = -1;
      } catch (const std::exception&) {
        v = -1;
      }
      if (!(v > 0) || !std::isfinite(v))
        throw Error(ErrorCode::InvalidArgument,
                    "codec 'transform' parameter 'layer_weights': '" + item + "' is not a positive number");
      s.layer_weights.push_back(v);
    }
    if (int(s.layer_weights.size()) != 2 * shape.layers)
      throw Error(ErrorCode::InvalidArgument, "codec 'transform' parameter 'layer_weights' needs " +
                                                  std::to_string(2 * shape.layers) + " numbers, got " +
                                                  std::to_string(s.layer_weights.size()));
  }
  s.calibration = p.get("calibration");
  s.layers = shape.layers;
  s.kv_heads = shape.kv_heads;
  s.tokens = shape.tokens;
  s.head_dim = shape.head_dim;
  return s;
}

namespace {

// Parsed calibrations by hash: the app re-encodes at every parameter change,
// and a calibration is megabytes of floats.
std::mutex g_cache_mutex;
std::vector<LoadedCalibration> g_cache;

// Files read before, by path, size and modification time: an encode loads
// its calibration twice (resolve_weighting, then the bases), so a file
// unchanged since is not read and hashed again. Under g_cache_mutex.
struct FileStamp {
  std::string path;
  std::uintmax_t size = 0;
  std::filesystem::file_time_type time;
  std::string hash;
};
std::vector<FileStamp> g_stamps;

// The parsed calibration of this hash, named by `path`, if cached. Under g_cache_mutex.
std::optional<LoadedCalibration> cached(const std::string& hash, const std::string& path) {
  for (const auto& c : g_cache)
    if (c.hash == hash) {
      LoadedCalibration out = c;
      out.path = path;
      return out;
    }
  return std::nullopt;
}

LoadedCalibration parse_file_bytes(std::span<const std::uint8_t> bytes, const std::string& path) {
  LoadedCalibration out;
  out.hash = calibration::file_hash(bytes);
  out.path = path;
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    if (auto c = cached(out.hash, path)) return *c;
  }
  const calibration::CalibrationFile file = calibration::parse(bytes, path);
  if (const auto* section = file.find(codec::transform::kSectionName))
    out.calibration =
        std::make_shared<const Calibration>(codec::transform::parse_calibration(*section, path));
  if (const auto* section = file.find(calibration::kChannelWeightingSection))
    out.weighting = std::make_shared<const calibration::ChannelWeighting>(
        calibration::parse_channel_weighting(*section, path));
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  if (g_cache.size() >= 2) g_cache.erase(g_cache.begin());
  g_cache.push_back(out);
  return out;
}

}  // namespace

const Calibration& LoadedCalibration::bases() const {
  if (!calibration)
    throw Error(ErrorCode::InvalidArgument, path,
                "calibration file has no transform bases (section transform.basis); add them with "
                "`kvscope-cli calibrate --context TEXT...`, or set basis=cache");
  return *calibration;
}

LoadedCalibration load_calibration_file(const std::string& path) {
  std::error_code ec;
  FileStamp stamp{path, std::filesystem::file_size(path, ec), {}, {}};
  if (!ec) stamp.time = std::filesystem::last_write_time(path, ec);
  if (!ec) {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    for (const auto& f : g_stamps)
      if (f.path == path && f.size == stamp.size && f.time == stamp.time)
        if (auto c = cached(f.hash, path)) return *c;
  }
  const std::string data = read_file(path);  // names the file when unreadable
  LoadedCalibration out =
      parse_file_bytes({reinterpret_cast<const std::uint8_t*>(data.data()), data.size()}, path);
  if (!ec) {
    stamp.hash = out.hash;
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    std::erase_if(g_stamps, [&](const FileStamp& f) { return f.path == path; });
    if (g_stamps.size() >= 4) g_stamps.erase(g_stamps.begin());
    g_stamps.push_back(std::move(stamp));
  }
  return out;
}

LoadedCalibration load_calibration_by_hash(const std::string& hash, const std::string& dir) {
  const std::filesystem::path d =
      dir.empty() ? calibration::default_calibration_dir() : std::filesystem::path(dir);
  const auto bytes = calibration::read_by_hash(hash, d);
  return parse_file_bytes(bytes, (d / (hash + calibration::kCalibrationExtension)).string());
}

void check_basis_fits(const BasisSet& set, const Settings& s, const std::string& what, bool stream) {
  if (set.layers != s.layers || set.kv_heads != s.kv_heads || set.head_dim != s.head_dim)
    throw Error(stream ? ErrorCode::Format : ErrorCode::InvalidArgument,
                what + ": the transform basis was calibrated for " + std::to_string(set.layers) +
                    " layers x " + std::to_string(set.kv_heads) + " KV heads x " +
                    std::to_string(set.head_dim) + " dims, the cache has " + std::to_string(s.layers) +
                    " x " + std::to_string(s.kv_heads) + " x " + std::to_string(s.head_dim));
}

const kv::KVCache& transform_input(const kv::KVCache& cache, Settings& s, kv::KVCache& storage) {
  s.rope_coded = false;
  // RoPE rotates pairs of dims: an odd head_dim has no RoPE to remove.
  if (!s.remove_rope || !cache.info.rope_applied || cache.shape().head_dim % 2 != 0) return cache;
  storage = cache;
  kv::remove_rope(storage);  // the cache's own RoPE tables, else plain RoPE from rope_theta
  s.rope_coded = true;
  return storage;
}

void gather_token(const float* tensor, const Settings& s, int group, int t, float* x) {
  const int h0 = s.grouping == Grouping::Layer ? 0 : group;
  const int h1 = s.grouping == Grouping::Layer ? s.kv_heads : group + 1;
  for (int h = h0; h < h1; ++h) {
    const float* src = tensor + (std::size_t(h) * s.tokens + t) * s.head_dim;
    std::copy(src, src + s.head_dim, x + std::size_t(h - h0) * s.head_dim);
  }
}

std::vector<std::uint16_t> token_gains(const float* x, int T, int n, double alpha) {
  std::vector<double> energy(std::size_t(std::max(T, 0)));
  double mean = 0;
  for (int t = 0; t < T; ++t) {
    double e = 0;
    for (int c = 0; c < n; ++c) e += double(x[std::size_t(t) * n + c]) * x[std::size_t(t) * n + c];
    energy[std::size_t(t)] = e;
    mean += e / T;
  }
  std::vector<std::uint16_t> gain(energy.size(), float_to_half(1.0f));
  if (!(mean > 0) || !std::isfinite(mean)) return gain;
  for (std::size_t t = 0; t < gain.size(); ++t) {
    const double g = std::pow(energy[t] / mean, 0.5 * alpha);
    gain[t] = float_to_half(float(std::clamp(std::isfinite(g) ? g : 1.0, 1.0 / 1024, 1024.0)));
  }
  return gain;
}

void divide_by_gains(const std::vector<std::uint16_t>& gains, int m, float* y) {
  for (std::size_t t = 0; t < gains.size(); ++t) {
    const float g = half_to_float(gains[t]);
    for (int j = 0; j < m; ++j) y[t * std::size_t(m) + std::size_t(j)] /= g;
  }
}

namespace {

// The calibration's channel weighting for a weighted allocation (checked
// against the cache's shape).
std::shared_ptr<const calibration::ChannelWeighting> weighting_for(const Settings& s,
                                                                   const LoadedCalibration* loaded) {
  if (!s.weighted()) return nullptr;
  // resolve_weighting() switched the weighting off where no weights are at hand.
  const LoadedCalibration file = loaded ? *loaded : load_calibration_file(s.calibration);
  if (!file.weighting)
    throw Error(ErrorCode::InvalidArgument, s.calibration, "calibration file has no channel weighting");
  const auto& w = *file.weighting;
  if (w.layers != s.layers || w.channels != s.kv_heads * s.head_dim)
    throw Error(ErrorCode::InvalidArgument, s.calibration,
                "the channel weighting is for " + std::to_string(w.layers) + " layers x " +
                    std::to_string(w.channels) + " channels, the cache has " + std::to_string(s.layers) +
                    " x " + std::to_string(s.kv_heads * s.head_dim));
  return file.weighting;
}

Bases unweighted_bases(const kv::KVCache& input, const Settings& s, int threads) {
  Bases b;
  if (s.source == Settings::Source::Calibration ||
      (s.source == Settings::Source::Auto && !s.calibration.empty())) {
    if (s.calibration.empty())
      throw Error(
          ErrorCode::InvalidArgument,
          "transform: no calibration for this model. Make one with `kvscope-cli calibrate --model "
          "MODEL --context TEXT...` (or Calibrate in the app) and pass it as calibration=FILE, or set "
          "basis=cache to compute the basis from this cache and ship it in the stream");
    b.calibration = load_calibration_file(s.calibration);
    b.set = b.calibration.bases().find(s.grouping);
    if (!b.set)
      throw Error(
          ErrorCode::InvalidArgument, s.calibration,
          std::string("calibration has no transform basis for grouping '") + to_string(s.grouping) + "'");
    check_basis_fits(*b.set, s, s.calibration, false);
    return b;
  }
  const int begin = std::min(s.sink_tokens, s.tokens);
  const int end = std::max(begin, s.tokens - s.recent_tokens);
  if (end - begin >= 2) {
    // The basis of the coded tokens only (sinks and the recent window are exact).
    kv::KVCache coded = input.slice_tokens(begin, end);
    coded.info.rope_applied = false;  // keys as the codec codes them (build_basis_set refuses post-RoPE keys)
    b.own = codec::transform::build_basis_set(coded, s.grouping, 0, threads);
  } else {
    // Fewer than two tokens to code: no covariance; the identity basis (mean 0) codes them.
    b.own.grouping = s.grouping;
    b.own.layers = s.layers;
    b.own.kv_heads = s.kv_heads;
    b.own.head_dim = s.head_dim;
    const int n = s.group_dim();
    b.own.bases.resize(std::size_t(s.layers) * 2 * s.groups());
    for (auto& g : b.own.bases) {
      g.n = n;
      g.mean.assign(n, 0.0f);
      g.variance.assign(n, 0.0f);
      g.vectors.assign(std::size_t(n) * n, 0.0f);
      for (int j = 0; j < n; ++j) g.vectors[std::size_t(j) * n + j] = 1.0f;
    }
  }
  // The stream ships vectors as fp16: code with exactly what the decoder gets.
  for (auto& g : b.own.bases)
    for (auto& v : g.vectors) v = half_to_float(float_to_half(v));
  b.set = &b.own;
  b.shipped = true;
  return b;
}

}  // namespace

Bases make_bases(const kv::KVCache& input, const Settings& s, int threads) {
  Bases b = unweighted_bases(input, s, threads);
  if (b.shipped) b.set = &b.own;  // whether or not the return was elided
  b.weighting = weighting_for(s, b.shipped ? nullptr : &b.calibration);
  return b;
}

}  // namespace kvscope::codec::detail::transform
