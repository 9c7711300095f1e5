// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli stats`: statistics of a saved KV cache (core/kv/stats.h).
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/io/raw_cache.h"
#include "kvscope/kv/stats.h"

namespace kvscope::cli {
namespace {

nlohmann::json moments_json(const kv::Moments& m) {
  return {{"count", m.count}, {"mean", m.mean}, {"std", m.std},
          {"min", m.min},     {"max", m.max},   {"kurtosis", m.kurtosis}};
}

nlohmann::json histogram_json(const kv::Histogram& h) {
  return {{"lo", h.lo}, {"hi", h.hi}, {"counts", h.counts}};
}

template <class S>
nlohmann::json by_series(const S& stats, bool with_histograms) {
  nlohmann::json j = nlohmann::json::object();
  for (kv::Series se : kv::kSeries) {
    const auto i = std::size_t(int(se));
    nlohmann::json s = {{"moments", moments_json(stats.moments[i])}, {"entropy_bits", stats.entropy_bits[i]}};
    if (with_histograms && !stats.histograms[i].counts.empty())
      s["histogram"] = histogram_json(stats.histograms[i]);
    j[std::string(kv::to_string(se))] = std::move(s);
  }
  return j;
}

struct Options {
  std::string in;
  kv::StatsConfig config;
  bool json = false;
  bool channels = false;
  bool channel_histograms = false;
};

void run(const Options& o) {
  const kv::KVCache cache = io::load_cache(o.in);
  kv::StatsConfig cfg = o.config;
  cfg.channel_histograms = o.channel_histograms;
  cfg.progress = terminal_progress();
  const kv::CacheStats st = kv::compute_stats(cache, cfg);
  if (o.json) {
    nlohmann::json j;
    j["file"] = o.in;
    j["model"] = cache.info.model_name;
    j["shape"] = {{"layers", st.shape.layers},
                  {"kv_heads", st.shape.kv_heads},
                  {"tokens", st.shape.tokens},
                  {"head_dim", st.shape.head_dim}};
    j["config"] = {{"histogram_bins", st.histogram_bins},
                   {"entropy_bins", st.entropy_bins},
                   {"group_size", st.group_size},
                   {"outlier_factor", st.outlier_factor}};
    j["seconds"] = st.seconds;
    for (int k = 0; k < 2; ++k) {
      nlohmann::json e;
      for (kv::Series se : kv::kSeries)
        e[std::string(kv::to_string(se))] = st.mean_entropy_bits[std::size_t(k)][std::size_t(int(se))];
      j["mean_entropy_bits"][kv::to_string(kv::kKinds[k])] = e;
    }
    j["tensors"] = nlohmann::json::array();
    for (const auto& t : st.tensors) {
      nlohmann::json tj = {{"layer", t.layer},
                           {"kind", kv::to_string(t.kind)},
                           {"series", by_series(t, true)},
                           {"adjacent_correlation", t.adjacent_correlation},
                           {"median_channel_absmax", t.median_channel_absmax},
                           {"outlier_channels", t.outlier_channels}};
      if (o.channels) {
        tj["channels"] = nlohmann::json::array();
        for (const auto& c : t.channels)
          tj["channels"].push_back({{"series", by_series(c, o.channel_histograms)},
                                    {"adjacent_correlation", c.adjacent_correlation},
                                    {"outlier", c.outlier}});
      }
      j["tensors"].push_back(std::move(tj));
    }
    print_json(j);
    return;
  }
  std::printf("%s: %d layers, %d kv heads, %d tokens, head_dim %d (%.3f s)\n", o.in.c_str(), st.shape.layers,
              st.shape.kv_heads, st.shape.tokens, st.shape.head_dim, st.seconds);
  std::printf("entropy at %d bins (bits/symbol), group size %d; outliers: absmax > %.1f x median\n",
              st.entropy_bins, st.group_size, st.outlier_factor);
  std::printf("%5s %-5s %9s %9s %9s %8s %7s %7s %7s %6s %s\n", "layer", "kind", "mean", "std", "absmax",
              "kurt", "H_raw", "H_anch", "H_prev", "corr1", "outliers");
  for (const auto& t : st.tensors) {
    std::printf("%5d %-5s %9.4f %9.4f %9.4f %8.2f %7.3f %7.3f %7.3f %6.3f %zu\n", t.layer,
                kv::to_string(t.kind), t.moments[0].mean, t.moments[0].std, t.moments[0].absmax(),
                t.moments[0].kurtosis, t.entropy_bits[0], t.entropy_bits[1], t.entropy_bits[2],
                t.adjacent_correlation, t.outlier_channels.size());
  }
}

const CommandRegistrar stats_command(300, [](CLI::App& app) {
  auto* cmd =
      app.add_subcommand("stats", "Statistics of a saved KV cache: distributions, deltas, entropy, outliers");
  auto o = std::make_shared<Options>();
  cmd->add_option("--in", o->in, "KV cache file (.safetensors, as written by `prefill`)")->required();
  cmd->add_option("--bins", o->config.entropy_bins, "quantizer levels for the entropy estimate")
      ->capture_default_str();
  cmd->add_option("--histogram-bins", o->config.histogram_bins, "bins of every histogram")
      ->capture_default_str();
  cmd->add_option("--group-size", o->config.group_size, "tokens per anchor group")->capture_default_str();
  cmd->add_option("--outlier-factor", o->config.outlier_factor,
                  "outlier channel: absmax > factor x median absmax")
      ->capture_default_str();
  cmd->add_option("--threads", o->config.threads, "worker threads (0 = all)")->capture_default_str();
  cmd->add_flag("--channels", o->channels, "include per-channel statistics in the JSON");
  cmd->add_flag("--channel-histograms", o->channel_histograms, "also include per-channel histograms (large)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvscope::cli
