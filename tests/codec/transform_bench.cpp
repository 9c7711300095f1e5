// SPDX-License-Identifier: Apache-2.0
// Encode/decode throughput of the `transform` codec in MB/s of fp16 KV per
// core (one thread; rates per CPU second, so a shared machine's load does not
// count against them), at several budgets, with a calibrated basis and with
// the cache's own basis shipped, plus where the bytes go.
// The cache: $KVSCOPE_BENCH_CACHE (a raw cache, e.g. `kvscope-cli prefill
// --max-tokens 2048 --pre-rope-keys FILE`) when set, else a synthetic cache
// of the default model's shape (30 layers, 3 KV heads, head_dim 64), 2048
// tokens. The calibrated basis is built from the same cache (the bases'
// content does not change the speed).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/codec/transform_plan.h"
#include "kvscope/io/raw_cache.h"

namespace {

using namespace kvscope;

const kv::KVCache& bench_cache() {
  static const kv::KVCache cache = [] {
    if (const char* path = std::getenv("KVSCOPE_BENCH_CACHE"); path && *path) return io::load_cache(path);
    auto c = codec::synthetic_cache({30, 3, 2048, 64}, 1);
    c.info.rope_applied = false;
    return c;
  }();
  return cache;
}

const std::filesystem::path& calibration_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / "kvscope-transform-bench";
    kv::KVCache c = bench_cache();
    c.info.rope_applied = false;  // statistics only
    // Channel weights for the query-weighted mode: any positive weights cost
    // the same to code with, so the keys' own mean squares stand in for the
    // queries' (a cache file holds no queries).
    const auto sh = c.shape();
    std::vector<float> key_w(std::size_t(sh.layers) * sh.channels(), 0.0f), value_w(key_w.size(), 1.0f);
    for (int l = 0; l < sh.layers; ++l)
      for (int h = 0; h < sh.kv_heads; ++h)
        for (int t = 0; t < sh.tokens; ++t)
          for (int d = 0; d < sh.head_dim; ++d)
            key_w[std::size_t(l) * sh.channels() + h * sh.head_dim + d] +=
                c.at(l, kv::Kind::Key, h, t, d) * c.at(l, kv::Kind::Key, h, t, d) / float(sh.tokens);
    std::vector<kv::KVCache> caches = {std::move(c)};
    codec::calibration::CalibrationFile f;
    f.sections[codec::transform::kSectionName] =
        codec::transform::serialize_calibration(codec::transform::build_calibration(caches));
    f.sections[codec::calibration::kChannelWeightingSection] =
        codec::calibration::serialize_channel_weighting(
            codec::calibration::build_channel_weighting(caches, key_w, value_w, 0.5, 0.0));
    std::filesystem::remove_all(d);
    codec::calibration::save(codec::calibration::serialize(f), d);
    return d;
  }();
  return dir;
}

enum class Mode { Calibrated, Weighted, Shipped };

codec::ParamSet params(double bits, Mode mode) {
  codec::ParamSet p = {{"bits", std::to_string(bits)}};
  if (mode == Mode::Shipped) {
    p["basis"] = "cache";
    return p;
  }
  for (const auto& e : std::filesystem::directory_iterator(calibration_dir()))
    p["calibration"] = e.path().string();
  p["basis"] = "calibration";
  if (mode == Mode::Calibrated) p["key_weighting"] = "0";  // Weighted: the default
  return p;
}

void set_counters(benchmark::State& state, const codec::EncodeResult& r, const codec::ParamSet& p) {
  const auto& c = bench_cache();
  const double el = double(r.size.elements);
  state.counters["bits_per_element"] = r.size.bits_per_element();
  state.counters["fp16_MB/s"] = benchmark::Counter(
      double(c.shape().fp16_bytes()) * double(state.iterations()) / 1e6, benchmark::Counter::kIsRate);
  const auto plan = codec::transform::plan_transform(c, p, 1);
  state.counters["basis_bpe"] = 8.0 * double(plan.estimate.basis) / el;
  state.counters["side_bpe"] = 8.0 * double(plan.estimate.side) / el;
  state.counters["exact_bpe"] = 8.0 * double(plan.estimate.exact) / el;
  state.counters["coeff_bpe"] = 8.0 * double(plan.estimate.payload) / el;
}

void BM_Encode(benchmark::State& state, double bits, Mode mode) {
  const auto p = params(bits, mode);
  codec::EncodeOptions o;
  o.threads = 1;
  codec::EncodeResult r;
  for (auto _ : state) {
    r = codec::find_codec("transform").encode(bench_cache(), p, o);
    benchmark::DoNotOptimize(r.bytes.data());
  }
  set_counters(state, r, p);
}

void BM_DecodeInto(benchmark::State& state, double bits, Mode mode) {
  const auto p = params(bits, mode);
  const auto r = codec::find_codec("transform").encode(bench_cache(), p);
  codec::DecodeOptions o;
  o.threads = 1;
  o.profile_dir = calibration_dir().string();
  kv::KVCache out;
  codec::decode_into(r.bytes, out, o);
  for (auto _ : state) {
    codec::decode_into(r.bytes, out, o);
    benchmark::DoNotOptimize(out.data().data());
  }
  set_counters(state, r, p);
}

const int registered = [] {
  for (Mode mode : {Mode::Calibrated, Mode::Weighted, Mode::Shipped})
    for (double bits : {0.5, 1.0, 2.0, 4.0}) {
      const char* name = mode == Mode::Calibrated ? "calibrated"
                         : mode == Mode::Weighted ? "weighted"
                                                  : "shipped";
      const std::string tag = std::string(name) + "/bits:" + std::to_string(bits).substr(0, 3);
      benchmark::RegisterBenchmark(("encode/" + tag).c_str(),
                                   [=](benchmark::State& s) { BM_Encode(s, bits, mode); })
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.5);
      benchmark::RegisterBenchmark(("decode_into/" + tag).c_str(),
                                   [=](benchmark::State& s) { BM_DecodeInto(s, bits, mode); })
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.5);
    }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
