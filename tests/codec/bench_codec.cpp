// SPDX-License-Identifier: Apache-2.0
// Encode/decode throughput of every codec in MB/s of fp16 KV (the cache's
// fp16 size per second), with 1 thread and all threads, plus sizes.
// The cache: $KVSCOPE_BENCH_CACHE (a safetensors raw cache, e.g. from
// `kvscope-cli prefill --max-tokens 2048`) when set, else a synthetic cache of the default model's shape (30
// layers, 3 kv heads, head_dim 64) with 2048 tokens.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/io/raw_cache.h"

namespace {

using namespace kvscope;

const kv::KVCache& bench_cache() {
  static const kv::KVCache cache = [] {
    if (const char* path = std::getenv("KVSCOPE_BENCH_CACHE"); path && *path) return io::load_cache(path);
    int tokens = 2048;
    if (const char* t = std::getenv("KVSCOPE_BENCH_TOKENS")) tokens = std::atoi(t);
    return codec::synthetic_cache({30, 3, tokens, 64}, 1);
  }();
  return cache;
}

void set_counters(benchmark::State& state, const codec::EncodeResult& r) {
  const auto& c = bench_cache();
  state.counters["bits_per_element"] = r.size.bits_per_element();
  state.counters["entropy_bpe"] = r.size.entropy_bits_per_element;
  state.counters["ratio_vs_fp16"] = r.size.ratio_vs_fp16();
  const double el = double(r.size.elements);
  state.counters["payload_bpe"] = 8.0 * double(r.size.payload_bytes) / el;
  state.counters["table_bpe"] = 8.0 * double(r.size.table_bytes) / el;
  state.counters["step_bpe"] = 8.0 * double(r.size.step_bytes) / el;
  state.counters["header_bpe"] = 8.0 * double(r.size.header_bytes) / el;
  state.counters["ratio_vs_int8"] =
      double(codec::int8_reference_bytes(c.shape())) / double(r.size.encoded_bytes);
  state.counters["fp16_MB/s"] = benchmark::Counter(
      double(c.shape().fp16_bytes()) * double(state.iterations()) / 1e6, benchmark::Counter::kIsRate);
}

void BM_Encode(benchmark::State& state, const std::string& codec, const codec::ParamSet& params) {
  const auto& cache = bench_cache();
  codec::EncodeOptions o;
  o.threads = int(state.range(0));
  codec::EncodeResult r;
  for (auto _ : state) {
    r = codec::find_codec(codec).encode(cache, params, o);
    benchmark::DoNotOptimize(r.bytes.data());
  }
  set_counters(state, r);
}

void BM_Decode(benchmark::State& state, const std::string& codec, const codec::ParamSet& params) {
  const auto& cache = bench_cache();
  const auto r = codec::find_codec(codec).encode(cache, params);
  codec::DecodeOptions o;
  o.threads = int(state.range(0));
  for (auto _ : state) {
    auto d = codec::decode(r.bytes, o);
    benchmark::DoNotOptimize(d.data().data());
  }
  set_counters(state, r);
}

// Decoding into a reused cache: a receiver's steady state (no allocation, no
// page faults), the number the 300 MB/s-per-core target is about.
void BM_DecodeInto(benchmark::State& state, const std::string& codec, const codec::ParamSet& params) {
  const auto& cache = bench_cache();
  const auto r = codec::find_codec(codec).encode(cache, params);
  codec::DecodeOptions o;
  o.threads = int(state.range(0));
  kv::KVCache out;
  codec::decode_into(r.bytes, out, o);
  for (auto _ : state) {
    codec::decode_into(r.bytes, out, o);
    benchmark::DoNotOptimize(out.data().data());
  }
  set_counters(state, r);
}

// What each cachegen mode costs (docs/bitstream.md "cachegen"): the layout
// version 2 defaults, then one version 3 feature at a time; plain "cachegen"
// is today's defaults (version 5: centroid reconstruction and, with a
// calibration, channel weighting).
const std::vector<std::pair<std::string, codec::ParamSet>>& cachegen_modes() {
  static const std::vector<std::pair<std::string, codec::ParamSet>> m = [] {
    const codec::ParamSet v2 = {{"key_bins", "16,24,24"},
                                {"key_layer_splits", "10,20"},
                                {"value_bins", "16,10"},
                                {"value_layer_splits", "2"},
                                {"sinks", "0"},
                                {"step_coding", "fp16"},
                                {"table_bits", "16"},
                                {"delta_mode", "integer"},
                                {"key_space", "post_rope"},
                                {"reconstruction", "0"},
                                {"profile", ""}};
    auto with = [&](const char* k, const char* v) {
      auto p = v2;
      p[k] = v;
      return p;
    };
    return std::vector<std::pair<std::string, codec::ParamSet>>{
        {"v2", v2},
        {"sinks", with("sinks", "1")},
        {"coded_steps", with("step_coding", "coded")},
        {"table_bits", with("table_bits", "10")},
        {"pre_rope", with("key_space", "pre_rope")},
        {"float", with("delta_mode", "float")},
        // Today's defaults without the channel weighting (plain "cachegen"
        // is weighted when $KVSCOPE_CALIBRATION_DIR has the model's weighting).
        {"unweighted", {{"channel_weighting", "off"}}},
        // Today's defaults decoding to bin midpoints (layout version 4 or 3).
        {"midpoints", {{"reconstruction", "0"}}},
    };
  }();
  return m;
}

const int registered = [] {
  const int all = int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::pair<std::string, std::pair<std::string, codec::ParamSet>>> runs;
  for (const codec::Codec* c : codec::all_codecs()) runs.push_back({c->name(), {c->name(), {}}});
  for (const auto& [mode, params] : cachegen_modes())
    runs.push_back({"cachegen[" + mode + "]", {"cachegen", params}});
  for (const auto& [label, config] : runs) {
    const std::string name = config.first;
    const codec::ParamSet params = config.second;
    for (const char* what : {"encode", "decode", "decode_into"}) {
      auto* b = benchmark::RegisterBenchmark((std::string(what) + "/" + label).c_str(),
                                             [name, params, what](benchmark::State& s) {
                                               if (std::string(what) == "encode")
                                                 BM_Encode(s, name, params);
                                               else if (std::string(what) == "decode")
                                                 BM_Decode(s, name, params);
                                               else
                                                 BM_DecodeInto(s, name, params);
                                             });
      b->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
      if (all > 1) b->Arg(all);
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
