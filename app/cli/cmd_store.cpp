// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli store put|get|ls|rm|bench`: publish a context's encoded ladder
// to a chunk store and inspect the store (docs/streaming.md, "Stores").
#include <iomanip>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/paths.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/store_load.h"
#include "kvscope/stream/streamer.h"
#include "stream_context.h"

namespace kvscope::cli {
namespace {

struct StoreOptions {
  std::string store;
  double timeout = 5.0;
  bool json = false;
};

void add_store_option(CLI::App* cmd, StoreOptions& o) {
  cmd->add_option("--store", o.store, "redis://HOST:PORT[,HOST:PORT...] | dir:PATH | tcp://HOST:PORT")
      ->required();
  cmd->add_option("--store-timeout", o.timeout, "seconds to keep retrying an unreachable store")
      ->capture_default_str();
  cmd->add_flag("--json", o.json, "print JSON");
}

std::unique_ptr<stream::ChunkStore> open(const StoreOptions& o) {
  stream::StoreOptions so;
  so.retry_timeout_s = o.timeout;
  return stream::open_store(o.store, so);
}

stream::Ladder ladder_or_default(const std::string& path) {
  return stream::load_ladder(path.empty() ? stream::default_ladder_path() : std::filesystem::path(path));
}

nlohmann::json manifest_json(const stream::Manifest& m) {
  nlohmann::json levels = nlohmann::json::array();
  for (const auto& l : m.levels) {
    std::uint64_t bytes = 0;
    for (auto b : l.bytes) bytes += b;
    levels.push_back({{"id", l.id},
                      {"name", l.name},
                      {"codec", l.config.codec},
                      {"params", l.config.params},
                      {"bytes", bytes}});
  }
  return {{"model_hash", m.context.model_hash},
          {"prefix_hash", m.context.prefix_hash},
          {"model", m.model_name},
          {"tokens", m.shape.tokens},
          {"chunk_tokens", m.chunk_tokens},
          {"chunks", m.chunks.size()},
          {"levels", levels},
          {"manifest_key", m.manifest_key()}};
}

// --- put -------------------------------------------------------------------

struct PutOptions {
  StoreOptions store;
  StreamContextOptions context;
  std::string ladder;
  int chunk_tokens = 1024;
};

void put(const PutOptions& o) {
  const auto progress = terminal_progress();
  auto store = open(o.store);
  StreamContext ctx = load_stream_context(o.context, false, progress);
  const auto ladder = ladder_or_default(o.ladder);
  stream::EncodedContext context(ctx.cache, o.chunk_tokens);
  stream::PrepareOptions prep;
  prep.progress = progress;
  std::vector<codec::CodecConfig> configs;
  for (const auto& l : ladder.levels) configs.push_back(l.config);
  context.prepare(configs, prep);
  const auto r = stream::publish(context, ladder.levels, *store, progress);
  if (o.store.json) {
    auto j = manifest_json(r.manifest);
    j["store"] = store->describe();
    j["values_written"] = r.values;
    j["bytes_written"] = r.bytes;
    j["seconds"] = r.seconds;
    print_json(j);
    return;
  }
  std::cout << "published " << r.manifest.shape.tokens << " tokens of " << r.manifest.model_name << " in "
            << r.manifest.chunks.size() << " chunks x " << ladder.levels.size() << " levels to "
            << store->describe() << ": " << r.values << " values, " << r.bytes << " bytes in " << std::fixed
            << std::setprecision(2) << r.seconds << " s\nmanifest: " << r.manifest.manifest_key() << "\n";
  for (const auto& l : r.manifest.levels) {
    std::uint64_t bytes = 0;
    for (auto b : l.bytes) bytes += b;
    std::cout << "  level " << std::left << std::setw(18) << l.name << std::right << " id " << l.id
              << std::setw(12) << bytes << " bytes\n";
  }
}

// --- get -------------------------------------------------------------------

struct GetOptions {
  StoreOptions store;
  std::string key;
  std::string output;
};

void get(const GetOptions& o) {
  auto store = open(o.store);
  auto value = store->get(o.key);
  if (!value) throw Error(ErrorCode::Io, "no key " + o.key + " in " + store->describe());
  nlohmann::json j{{"key", o.key}, {"bytes", value->size()}};
  const auto parsed = stream::parse_key(o.key);
  // Check what we can tell from the key: a manifest parses, a chunk is a
  // sound bitstream of the key's token count.
  if (parsed && parsed->manifest) {
    j["manifest"] = manifest_json(stream::parse_manifest(*value, store->describe() + " key " + o.key));
  } else if (parsed) {
    codec::StreamInfo info;
    try {
      info = codec::inspect_stream(*value, true);
    } catch (const Error& e) {
      throw Error(e.code(), store->describe() + " key " + o.key + ": " + e.what());
    }
    require(info.shape.tokens == parsed->end - parsed->begin, ErrorCode::Format,
            store->describe() + " key " + o.key + ": the bitstream holds " +
                std::to_string(info.shape.tokens) + " tokens, the key says " +
                std::to_string(parsed->end - parsed->begin));
    j["bitstream"] = {{"codec", info.codec},
                      {"tokens", info.shape.tokens},
                      {"sections", info.sections.size()},
                      {"crc", "ok"}};
  }
  if (!o.output.empty()) {
    write_file_atomically(o.output, value->data(), value->size());
    j["written_to"] = o.output;
  }
  if (o.store.json || !o.output.empty() || parsed) {
    print_json(j);
  } else {
    std::cout.write(reinterpret_cast<const char*>(value->data()), std::streamsize(value->size()));
  }
}

// --- ls / rm ----------------------------------------------------------------

struct ListOptions {
  StoreOptions store;
  std::string prefix = "kvscope:";
};

void ls(const ListOptions& o) {
  auto store = open(o.store);
  const auto keys = store->list(o.prefix);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& k : keys) {
    nlohmann::json e{{"key", k}};
    if (auto p = stream::parse_key(k)) {
      e["model_hash"] = p->context.model_hash;
      e["prefix_hash"] = p->context.prefix_hash;
      if (p->manifest) {
        e["kind"] = "manifest";
        e["chunk_tokens"] = p->chunk_tokens;
      } else {
        e["kind"] = "chunk";
        e["tokens"] = {p->begin, p->end};
        e["level"] = p->level;
      }
    }
    out.push_back(std::move(e));
  }
  if (o.store.json) {
    print_json({{"store", store->describe()}, {"keys", out}});
    return;
  }
  for (const auto& k : keys) std::cout << k << "\n";
  std::cerr << keys.size() << " keys in " << store->describe() << "\n";
}

struct RemoveOptions {
  StoreOptions store;
  std::vector<std::string> keys;
  std::string prefix;
};

void rm(const RemoveOptions& o) {
  require(!o.keys.empty() || !o.prefix.empty(), ErrorCode::InvalidArgument,
          "store rm needs KEY... or --prefix");
  auto store = open(o.store);
  std::vector<std::string> keys = o.keys;
  if (!o.prefix.empty()) {
    const auto more = store->list(o.prefix);
    keys.insert(keys.end(), more.begin(), more.end());
  }
  int removed = 0;
  for (const auto& k : keys) removed += store->remove(k) ? 1 : 0;
  if (o.store.json) {
    print_json({{"removed", removed}, {"asked", keys.size()}});
  } else {
    std::cout << "removed " << removed << " of " << keys.size() << " keys from " << store->describe() << "\n";
  }
}

// --- bench ------------------------------------------------------------------

struct BenchOptions {
  StoreOptions store;
  int receivers = 16;
  double seconds = 60;
  int tokens = 2048;
  int chunk_tokens = 256;
  double mbps = 0;
  std::string ladder;
};

void bench(const BenchOptions& o) {
  const auto progress = terminal_progress();
  auto store = open(o.store);
  // One synthetic context per receiver, shaped like the default model's
  // cache (30 layers, 3 KV heads, head_dim 64), with distinct token ids.
  const auto ladder = o.ladder.empty() ? stream::load_ladder(stream::ladder_dir() / "quantization.json")
                                       : stream::load_ladder(o.ladder);
  std::vector<stream::Manifest> contexts;
  std::uint64_t published = 0;
  for (int r = 0; r < o.receivers; ++r) {
    report_progress(progress, double(r) / o.receivers, "publishing context " + std::to_string(r + 1));
    auto cache = std::make_shared<kv::KVCache>(codec::synthetic_cache({30, 3, o.tokens, 64}, 1000 + r));
    cache->info.model_name = "synthetic";
    cache->info.token_ids.resize(o.tokens);
    for (int t = 0; t < o.tokens; ++t) cache->info.token_ids[t] = (r * 7919 + t * 31) % 49152;
    stream::EncodedContext context(cache, o.chunk_tokens);
    stream::PrepareOptions prep;
    prep.measure_decode = false;
    std::vector<codec::CodecConfig> configs;
    for (const auto& l : ladder.levels) configs.push_back(l.config);
    context.prepare(configs, prep);
    auto rep = stream::publish(context, ladder.levels, *store);
    published += rep.bytes;
    contexts.push_back(std::move(rep.manifest));
  }
  report_progress(progress, 1.0, "published");
  stream::LoadTestConfig cfg;
  cfg.receivers = o.receivers;
  cfg.seconds = o.seconds;
  cfg.mbps_per_receiver = o.mbps;
  cfg.store_options.retry_timeout_s = o.store.timeout;
  const auto r = stream::run_load_test(o.store.store, contexts, cfg);
  nlohmann::json j{{"store", store->describe()},
                   {"receivers", r.receivers},
                   {"seconds", r.seconds},
                   {"context_tokens", o.tokens},
                   {"chunk_tokens", o.chunk_tokens},
                   {"ladder", ladder.name},
                   {"mbps_per_receiver", o.mbps},
                   {"published_bytes", published},
                   {"chunks", r.chunks},
                   {"bytes", r.bytes},
                   {"megabytes_per_s", r.megabytes_per_s},
                   {"chunks_per_s", r.chunks_per_s},
                   {"fetch_p50_ms", r.fetch_p50_ms},
                   {"fetch_p99_ms", r.fetch_p99_ms},
                   {"fetch_max_ms", r.fetch_max_ms},
                   {"corrupt", r.corrupt},
                   {"missing", r.missing},
                   {"network_errors", r.network_errors},
                   {"first_errors", r.first_errors}};
  // Clean up what the bench published.
  for (const auto& m : contexts)
    for (const auto& k : store->list(stream::context_prefix(m.context))) store->remove(k);
  if (o.store.json) {
    print_json(j);
  } else {
    std::cout << std::fixed << std::setprecision(2) << r.receivers << " receivers, " << r.seconds << " s on "
              << store->describe() << ": " << r.chunks << " chunks, " << r.megabytes_per_s << " MB/s, "
              << r.chunks_per_s << " chunks/s; fetch latency p50 " << r.fetch_p50_ms << " ms, p99 "
              << r.fetch_p99_ms << " ms, max " << r.fetch_max_ms << " ms; corrupt " << r.corrupt
              << ", missing " << r.missing << ", network errors " << r.network_errors << "\n";
    for (const auto& e : r.first_errors) std::cout << "  error: " << e << "\n";
  }
  if (r.corrupt + r.missing + r.network_errors > 0)
    throw Error(ErrorCode::Checksum, "store bench: chunks were corrupt, missing or unreachable");
}

const CommandRegistrar store_command(62, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("store", "Publish contexts to a chunk store and inspect it");
  cmd->require_subcommand(1);

  auto po = std::make_shared<PutOptions>();
  auto* p = cmd->add_subcommand(
      "put", "Encode a context at every ladder level and publish it (chunks, then manifest)");
  add_store_option(p, po->store);
  add_stream_context_options(p, po->context);
  p->add_option("--ladder", po->ladder, "codec ladder file (default: resources/ladders/default.json)");
  p->add_option("--chunk-tokens", po->chunk_tokens, "tokens per chunk")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  p->add_flag("--quality", po->context.quality, "use `stream --quality`'s split of the context");
  p->callback([po] { put(*po); });

  auto go = std::make_shared<GetOptions>();
  auto* g = cmd->add_subcommand("get", "Fetch one value; chunk and manifest keys are checked");
  add_store_option(g, go->store);
  g->add_option("key", go->key, "the key")->required();
  g->add_option("-o,--output", go->output, "write the value to this file");
  g->callback([go] { get(*go); });

  auto lo = std::make_shared<ListOptions>();
  auto* l = cmd->add_subcommand("ls", "List keys (default: every KVScope key)");
  add_store_option(l, lo->store);
  l->add_option("prefix", lo->prefix, "key prefix")->capture_default_str();
  l->callback([lo] { ls(*lo); });

  auto ro = std::make_shared<RemoveOptions>();
  auto* r = cmd->add_subcommand("rm", "Remove keys");
  add_store_option(r, ro->store);
  r->add_option("keys", ro->keys, "keys to remove");
  r->add_option("--prefix", ro->prefix, "also remove every key starting with this");
  r->callback([ro] { rm(*ro); });

  auto bo = std::make_shared<BenchOptions>();
  auto* b = cmd->add_subcommand("bench",
                                "Load test: many receivers fetching checked chunks from one store at once");
  add_store_option(b, bo->store);
  b->add_option("--receivers", bo->receivers, "concurrent receivers (one context each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  b->add_option("--seconds", bo->seconds, "duration")->capture_default_str();
  b->add_option("--tokens", bo->tokens, "tokens per context")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  b->add_option("--chunk-tokens", bo->chunk_tokens, "tokens per chunk")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  b->add_option("--mbps", bo->mbps, "pace each receiver's reads at this rate (0 = unpaced)")
      ->capture_default_str();
  b->add_option("--ladder", bo->ladder, "codec ladder (default: resources/ladders/quantization.json)");
  b->callback([bo] { bench(*bo); });
});

}  // namespace
}  // namespace kvscope::cli
