// SPDX-License-Identifier: Apache-2.0
// Writes the corpus tests/bitstream_py/test_decoder.py checks the
// independent Python decoder against: every golden stream and freshly
// encoded streams of every codec and mode (random shapes, chunkings and
// parameters, zero-token and all-zero caches), each with the C++ decoder's
// float32 values; a calibration profile for cachegen's profile mode; and HDF5
// exports (one with an embedded profile) for the h5py path.
//
//   bitstream_make_corpus OUT_DIR GOLDEN_DIR
//
// OUT_DIR/manifest.json lists every item: {"name", "kvc", "f32", "shape",
// "codec", "params", "orig" (the encoded cache, float32), "h5" (optional)}.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/common/paths.h"
#if KVSCOPE_CORPUS_HDF5
#include "kvscope/io/hdf5_container.h"
#endif

namespace fs = std::filesystem;
using namespace kvscope;

namespace {

void write_f32(const fs::path& path, std::span<const float> values) {
  write_file_atomically(path, values.data(), values.size() * sizeof(float));
}

bool has_zstd() {
  for (const auto* c : codec::all_codecs())
    if (c->name() == "zstd") return true;
  return false;
}

struct Case {
  std::string name;
  kv::CacheShape shape;
  std::uint64_t seed = 1;
  codec::CodecConfig config;
  bool zero = false;  // an all-zero cache (empty coded streams)
  // Key RoPE state of the cache: as synthetic_cache makes it (rope_applied,
  // positions 0..T-1), with explicit positions, with per-layer RoPE tables,
  // or without RoPE.
  enum class Rope { Default, Positions, Tables, None } rope = Rope::Default;
};

// The version 3 parameters at their version 2 meaning: such a stream is
// written as layout version 2 (docs/bitstream.md "cachegen").
const codec::ParamSet kCachegenV2 = {
    {"sinks", "0"},       {"delta_mode", "integer"},  {"step_coding", "fp16"},
    {"table_bits", "16"}, {"key_space", "post_rope"}, {"reconstruction", "0"}};

codec::ParamSet with(codec::ParamSet base, const codec::ParamSet& more) {
  for (const auto& [k, v] : more) base[k] = v;
  return base;
}

// Random parameters for each codec and mode; fixed seed, so the corpus is
// the same on every run.
std::vector<Case> fresh_cases() {
  std::mt19937 rng(20261206);
  auto pick = [&](int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  std::vector<Case> cases;
  auto shape = [&](bool simd_friendly) {
    kv::CacheShape s{pick(1, 4), pick(1, 3), pick(0, 45), simd_friendly ? 8 * pick(1, 2) : pick(1, 12)};
    if (s.tokens == 0 && pick(0, 1)) s.tokens = 1;
    return s;
  };
  auto add = [&](const std::string& name, codec::CodecConfig cfg, bool simd = false,
                 Case::Rope rope = Case::Rope::Default) {
    Case c;
    c.shape = shape(simd);
    c.rope = rope;
    // RoPE rotates pairs of dimensions: keys before RoPE need an even head_dim.
    const auto ks = cfg.params.find("key_space");
    if ((ks != cfg.params.end() && ks->second == "pre_rope") || rope == Case::Rope::Tables)
      c.shape.head_dim += c.shape.head_dim % 2;
    c.seed = rng();
    c.name = name + "-" + std::to_string(cases.size());
    if (!cfg.params.count("chunk_tokens")) cfg.params["chunk_tokens"] = std::to_string(pick(1, 24));
    c.config = std::move(cfg);
    cases.push_back(std::move(c));
  };
  for (int i = 0; i < 3; ++i) {
    add("fp16", {"fp16", {}});
    add("int8", {"int8", {}});
    add("int4", {"int4", {}});
    add("kivi2",
        {"kivi2",
         {{"group_size", std::to_string(pick(1, 9))}, {"residual_tokens", std::to_string(pick(0, 30))}}});
    add("lmcache", {"cachegen-lmcache", {}});
    add("lmcache-bins", {"cachegen-lmcache",
                         {{"key_bins", std::to_string(2 * pick(2, 128))},
                          {"key_layer_splits", ""},
                          {"value_bins", std::to_string(2 * pick(2, 128))},
                          {"value_layer_splits", ""}}});
    if (has_zstd()) add("zstd", {"zstd", {{"level", std::to_string(pick(1, 19))}}});
  }
  // Integer deltas: version 2 streams (the version 3 parameters neutral) and
  // the version 3 defaults (a sink, keys before RoPE, coded steps, 10-bit tables).
  for (const char* scale : {"token", "head", "channel"})
    for (const char* delta : {"auto", "always", "never"})
      for (bool simd : {false, true})
        for (bool v2 : {true, false}) {
          codec::ParamSet params = {{"scale", scale},
                                    {"delta", delta},
                                    {"group_size", std::to_string(pick(1, 12))},
                                    {"key_bins", std::to_string(2 * pick(2, 128))},
                                    {"key_layer_splits", ""},
                                    {"value_bins", std::to_string(2 * pick(2, 128))},
                                    {"value_layer_splits", ""}};
          add(std::string("cachegen-") + (v2 ? "v2-" : "v3-") + scale + "-" + delta,
              {"cachegen", v2 ? with(params, kCachegenV2) : params}, simd);
        }
  // Layout version 3, each mode on its own and mixed (docs/bitstream.md
  // "cachegen", "Version 3").
  for (int i = 0; i < 3; ++i) {
    const std::string scale = i == 1 ? "head" : i == 2 ? "channel" : "token";
    add("cachegen-sinks", {"cachegen", with(kCachegenV2, {{"sinks", std::to_string(pick(1, 30))},
                                                          {"scale", scale},
                                                          {"group_size", std::to_string(pick(1, 12))}})});
    add("cachegen-coded-steps", {"cachegen", with(kCachegenV2, {{"step_coding", "coded"}, {"scale", scale}})},
        i == 2);
    add("cachegen-table-bits",
        {"cachegen", with(kCachegenV2, {{"table_bits", std::to_string(pick(10, 15))}, {"scale", scale}})});
    add("cachegen-pre-rope", {"cachegen", with(kCachegenV2, {{"key_space", "pre_rope"}, {"scale", scale}})},
        i == 0,
        i == 1   ? Case::Rope::Positions
        : i == 2 ? Case::Rope::Tables
                 : Case::Rope::Default);
  }
  add("cachegen-pre-rope-norope", {"cachegen", with(kCachegenV2, {{"key_space", "pre_rope"}})}, false,
      Case::Rope::None);
  // Layout version 5: centroid reconstruction at a random strength
  // (docs/bitstream.md "cachegen", "Version 5"); the "v3-" cases above use it
  // too, as today's default.
  for (const char* scale : {"token", "head", "channel"})
    for (bool simd : {false, true})
      add(std::string("cachegen-centroid-") + scale,
          {"cachegen", with(kCachegenV2, {{"reconstruction", std::to_string(pick(1, 100) / 100.0)},
                                          {"scale", scale},
                                          {"group_size", std::to_string(pick(1, 12))},
                                          {"key_bins", std::to_string(2 * pick(2, 64))},
                                          {"key_layer_splits", ""}})},
          simd);
  for (const char* scale : {"token", "head"})
    for (const char* steps : {"fp16", "coded"})
      for (bool simd : {false, true})
        add(std::string("cachegen-float-") + scale + "-" + steps,
            {"cachegen",
             {{"delta_mode", "float"},
              {"scale", scale},
              {"step_coding", steps},
              {"anchor_bins", std::to_string(2 * pick(2, 128))},
              {"group_size", std::to_string(pick(1, 12))},
              {"key_bins", std::to_string(2 * pick(2, 128))},
              {"key_layer_splits", ""},
              {"value_bins", std::to_string(2 * pick(2, 128))},
              {"value_layer_splits", ""},
              {"sinks", std::to_string(pick(0, 12))},
              {"table_bits", std::to_string(pick(10, 16))},
              {"key_space", pick(0, 1) ? "pre_rope" : "post_rope"}}},
            simd, simd ? Case::Rope::Positions : Case::Rope::Default);
  // Per-layer bins (an empty split list with one entry per layer).
  for (int i = 0; i < 2; ++i) {
    Case c;
    c.name = "cachegen-per-layer-" + std::to_string(cases.size());
    c.shape = {5, 2, 29, 8};
    c.seed = rng();
    std::string kb, vb;
    for (int l = 0; l < c.shape.layers; ++l) {
      kb += (l ? "," : "") + std::to_string(2 * pick(2, 128));
      vb += (l ? "," : "") + std::to_string(2 * pick(2, 128));
    }
    c.config = {"cachegen",
                {{"chunk_tokens", "9"},
                 {"key_bins", kb},
                 {"key_layer_splits", ""},
                 {"value_bins", vb},
                 {"value_layer_splits", ""}}};
    if (i == 1) c.config.params = with(c.config.params, {{"delta_mode", "float"}});
    cases.push_back(c);
  }
  // transform: shipped bases (basis=cache), both groupings, exact sink and
  // recent tokens, keys before RoPE (key_rope=remove) or as they are; without
  // value token gains (layout version 1) and with them (version 3).
  for (const char* grouping : {"layer", "head"})
    for (const char* key_rope : {"remove", "keep"})
      for (int i = 0; i < 2; ++i)
        add(std::string("transform-") + grouping + "-" + key_rope,
            {"transform",
             {{"basis", "cache"},
              {"grouping", grouping},
              {"key_rope", key_rope},
              {"bits", std::to_string(pick(1, 6))},
              {"sink_tokens", std::to_string(pick(0, 6))},
              {"recent_tokens", std::to_string(pick(0, 6))},
              {"value_gain", i == 1 ? std::to_string(pick(1, 10) / 10.0) : "0"}}},
            i == 1, i == 1 ? Case::Rope::Positions : Case::Rope::Default);
  // Layer groups (splits) and the defaults.
  for (int i = 0; i < 2; ++i) {
    Case c;
    c.name = "cachegen-layers-" + std::to_string(cases.size());
    c.shape = {6, 2, 33, 8};
    c.seed = rng();
    c.config = {"cachegen",
                {{"chunk_tokens", "10"},
                 {"key_bins", "8,32,64"},
                 {"key_layer_splits", "2,5"},
                 {"value_bins", "16,12"},
                 {"value_layer_splits", "1"}}};
    if (i == 1) c.config = {"cachegen", {}};
    cases.push_back(c);
  }
  // All-zero caches: single-symbol models, empty streams.
  for (const char* codec : {"cachegen", "cachegen-lmcache", "kivi2", "int8", "int4"}) {
    Case c;
    c.name = std::string("zero-") + codec;
    c.shape = {2, 2, 20, 8};
    c.zero = true;
    c.config = {codec, {{"chunk_tokens", "7"}}};
    cases.push_back(c);
  }
  return cases;
}

kv::KVCache make_cache(const Case& c) {
  kv::CacheShape shape = c.shape;
  kv::KVCache cache = codec::synthetic_cache(shape, c.seed);
  if (c.zero) std::fill(cache.data().begin(), cache.data().end(), 0.0f);
  cache.info.model_name = "corpus";
  if (c.rope == Case::Rope::None) cache.info.rope_applied = false;
  if (c.rope == Case::Rope::Positions)
    for (int t = 0; t < shape.tokens; ++t) cache.info.positions.push_back(7 + 3 * t);
  // Every third stream carries the extended cache info (container flag bit
  // 0): per-layer RoPE tables and attention windows.
  if ((c.seed % 3 == 0 || c.rope == Case::Rope::Tables) && shape.head_dim % 2 == 0) {
    for (int l = 0; l < shape.layers; ++l) {
      std::vector<double> f(std::size_t(shape.head_dim / 2));
      for (std::size_t i = 0; i < f.size(); ++i) f[i] = 1.0 / (1.0 + double(l) + double(i) * 0.37);
      cache.info.rope_inv_freq.push_back(f);
      cache.info.layer_window.push_back(l % 2 ? 0 : 4096 + l);
    }
  }
  return cache;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: bitstream_make_corpus OUT_DIR GOLDEN_DIR\n";
    return 2;
  }
  try {
    const fs::path out = argv[1], golden = argv[2];
    fs::create_directories(out);
    // cachegen's profile=auto (a default) looks in the calibration folder:
    // OUT_DIR/profiles, so the corpus does not depend on the user's files.
    const fs::path profiles = out / "profiles";
    ::setenv("KVSCOPE_CALIBRATION_DIR", profiles.c_str(), 1);
    nlohmann::json manifest = nlohmann::json::array();
    codec::DecodeOptions dopt;
    dopt.threads = 1;
    auto entry = [&](const std::string& name, const std::vector<std::uint8_t>& bytes) {
      write_file_atomically(out / (name + ".kvc"), bytes.data(), bytes.size());
      kv::KVCache decoded;
      try {
        decoded = codec::decode(bytes, dopt);
      } catch (const Error& e) {
        throw Error(e.code(), name + ": " + e.what());
      }
      write_f32(out / (name + ".f32"), decoded.data());
      const auto info = codec::inspect_stream(bytes);
      const auto& s = info.shape;
      return nlohmann::json{{"name", name},
                            {"kvc", name + ".kvc"},
                            {"f32", name + ".f32"},
                            {"codec", info.codec},
                            {"params", info.params},
                            {"shape", {s.layers, s.kv_heads, s.tokens, s.head_dim}},
                            {"rope_inv_freq", info.info.rope_inv_freq},
                            {"layer_window", info.info.layer_window}};
    };

    // Golden streams, as committed.
    std::vector<fs::path> goldens;
    for (const auto& e : fs::directory_iterator(golden))
      if (e.path().extension() == ".kvc") goldens.push_back(e.path());
    std::sort(goldens.begin(), goldens.end());
    for (const auto& g : goldens) {
      const std::string text = read_file(g);
      manifest.push_back(entry("golden-" + g.stem().string(), {text.begin(), text.end()}));
    }

    // Fresh streams of every codec and mode.
    for (const auto& c : fresh_cases()) {
      const auto cache = make_cache(c);
      const auto bytes = codec::encode(cache, c.config, {.threads = 1, .progress = {}}).bytes;
      auto j = entry(c.name, bytes);
      write_f32(out / (c.name + ".orig.f32"), cache.data());
      j["orig"] = c.name + ".orig.f32";
      manifest.push_back(j);
    }

    // cachegen's profile mode: a profile in OUT_DIR/profiles, streams that reference it.
    kv::CacheShape pshape{3, 2, 40, 8};
    std::vector<kv::KVCache> calib = {codec::synthetic_cache(pshape, 11), codec::synthetic_cache(pshape, 12)};
    std::vector<std::string> profile_streams;
    for (const char* scale : {"token", "channel"}) {
      codec::ParamSet params = {{"chunk_tokens", "16"}, {"group_size", "6"}, {"scale", scale}};
      // scale=channel: a layout version 2 stream (tables of keys after RoPE);
      // scale=token: the version 3 defaults (keys before RoPE).
      if (std::string(scale) == "channel") params = with(params, kCachegenV2);
      const auto prof = codec::calibration::build_profile(calib, params);
      const auto path = codec::calibration::save_profile(prof, profiles);
      params["profile"] = path.string();
      dopt.profile_dir = profiles.string();
      const auto cache = codec::synthetic_cache(pshape, 13);
      const std::string name = std::string("cachegen-profile-") + scale;
      auto j = entry(name, codec::encode(cache, {"cachegen", params}, {.threads = 1, .progress = {}}).bytes);
      write_f32(out / (name + ".orig.f32"), cache.data());
      j["orig"] = name + ".orig.f32";
      j["profile_dir"] = "profiles";
      j["profile_file"] = path.filename().string();
      manifest.push_back(j);
      profile_streams.push_back(name);
    }
    // profile=auto: the model's calibration file from the calibration folder,
    // where it codes the cache in fewer bits than shipped tables.
    {
      const auto cache = codec::synthetic_cache(pshape, 14);
      const std::string name = "cachegen-profile-auto";
      const auto bytes =
          codec::encode(cache,
                        {"cachegen", {{"chunk_tokens", "16"}, {"group_size", "6"}, {"scale", "token"}}},
                        {.threads = 1, .progress = {}})
              .bytes;
      auto j = entry(name, bytes);
      write_f32(out / (name + ".orig.f32"), cache.data());
      j["orig"] = name + ".orig.f32";
      j["profile_dir"] = "profiles";
      // Codec header: u8 coder, u8 tables (1 = calibration), 16 hash digits.
      const auto info = codec::inspect_stream(bytes);
      if (info.codec_header_bytes == 18 && bytes[info.codec_header_offset + 1] == 1)
        j["profile_file"] = std::string(bytes.begin() + std::ptrdiff_t(info.codec_header_offset + 2),
                                        bytes.begin() + std::ptrdiff_t(info.codec_header_offset + 18)) +
                            ".kvsprof";
      manifest.push_back(j);
    }
    // Calibrated channel weighting (layout version 4): a calibration with the
    // weighting and tables counted with it; one stream takes its tables, one
    // ships its own (the weighting found in the calibration folder).
    {
      kv::CacheShape wshape{2, 2, 48, 8};
      const auto wcal = codec::synthetic_cache(wshape, 31);
      std::vector<float> key_w, value_w(std::size_t(wshape.layers) * wshape.channels(), 1.0f);
      for (int l = 0; l < wshape.layers; ++l)
        for (int c = 0; c < wshape.channels(); ++c) key_w.push_back(float(1 + (c % 4) * (c % 4)));
      const auto w = codec::calibration::build_channel_weighting(std::vector<kv::KVCache>{wcal}, key_w,
                                                                 value_w, 0.5, 0.0);
      const codec::ParamSet base = {{"chunk_tokens", "16"}, {"sinks", "1"}};
      codec::ParamSet tables_params = base;
      tables_params["profile"] = "";
      auto file = codec::calibration::parse(
          codec::calibration::build_profile(std::vector<kv::KVCache>{wcal}, tables_params, {}, &w), "corpus");
      file.sections[codec::calibration::kChannelWeightingSection] =
          codec::calibration::serialize_channel_weighting(w);
      const auto path = codec::calibration::save(codec::calibration::serialize(file), profiles);
      const auto cache = codec::synthetic_cache(wshape, 32);
      for (const bool from_file : {true, false}) {
        codec::ParamSet params = base;
        params["profile"] = from_file ? path.string() : std::string();
        const std::string name = from_file ? "cachegen-weighting-profile" : "cachegen-weighting";
        auto j =
            entry(name, codec::encode(cache, {"cachegen", params}, {.threads = 1, .progress = {}}).bytes);
        write_f32(out / (name + ".orig.f32"), cache.data());
        j["orig"] = name + ".orig.f32";
        j["profile_dir"] = "profiles";
        if (from_file) j["profile_file"] = path.filename().string();
        manifest.push_back(j);
      }
    }
    // transform with its bases from a calibration file (codec header source 0).
    {
      kv::CacheShape tshape{2, 2, 30, 8};
      std::vector<kv::KVCache> tcal = {codec::synthetic_cache(tshape, 21),
                                       codec::synthetic_cache(tshape, 22)};
      for (auto& c : tcal) c.info.rope_applied = false;  // bases are computed from keys before RoPE
      codec::calibration::CalibrationFile file;
      file.model_name = "synthetic";
      file.sections["transform.basis"] =
          codec::transform::serialize_calibration(codec::transform::build_calibration(tcal, {.threads = 1}));
      // Channel weights for the query-weighted streams (layout version 2).
      std::vector<float> key_w, value_w;
      for (int l = 0; l < tshape.layers; ++l)
        for (int c = 0; c < tshape.channels(); ++c) {
          key_w.push_back(float(1 + (c * 7 + l) % 5 * 3));
          value_w.push_back(float(1 + (c + l) % 3));
        }
      file.sections[codec::calibration::kChannelWeightingSection] =
          codec::calibration::serialize_channel_weighting(
              codec::calibration::build_channel_weighting(tcal, key_w, value_w, 0.5, 0.0));
      const auto bytes = codec::calibration::serialize(file);
      const auto path = codec::calibration::save(bytes, profiles);
      for (const std::string grouping : {"layer", "head"})
        for (const std::string variant : {"", "-weighted", "-gained"}) {
          const bool weighted = !variant.empty();  // -gained: weighted too (layout version 3)
          const auto cache = codec::synthetic_cache(tshape, 23);
          const std::string name = "transform-calibration-" + grouping + variant;
          const codec::ParamSet params = {
              {"basis", "calibration"},
              {"calibration", path.string()},
              {"grouping", grouping},
              {"chunk_tokens", "10"},
              // at bits=2 the header and the sink tokens of so small a cache
              // left no bits for coefficients
              {"bits", "6"},
              {"key_weighting", weighted ? "1" : "0"},  // 0: layout version 1 with the same file
              {"value_weighting", weighted ? "0.5" : "0"},
              {"value_gain", variant == "-gained" ? "0.75" : "0"}};
          auto j =
              entry(name, codec::encode(cache, {"transform", params}, {.threads = 1, .progress = {}}).bytes);
          write_f32(out / (name + ".orig.f32"), cache.data());
          j["orig"] = name + ".orig.f32";
          j["profile_dir"] = "profiles";
          j["profile_file"] = path.filename().string();
          manifest.push_back(j);
        }
    }

#if KVSCOPE_CORPUS_HDF5
    // HDF5 exports (with the reference cache) for the h5py path.
    // The first fresh stream of each codec and cachegen mode, the profile
    // streams and the all-zero caches.
    std::set<std::string> kinds;
    for (auto& j : manifest) {
      const std::string name = j["name"];
      if (!j.contains("orig")) continue;
      const std::string kind = name.substr(0, name.find_last_of('-'));
      const bool pick = kinds.insert(kind).second || name.find("profile") != std::string::npos ||
                        name.rfind("zero-", 0) == 0;
      if (!pick) continue;
      const std::string text = read_file(out / (name + ".kvc"));
      auto contents = io::hdf5_contents_from_bitstream({text.begin(), text.end()}, "corpus");
      const auto& sh = contents.shape;
      kv::KVCache ref(sh);
      const std::string orig = read_file(out / j["orig"].get<std::string>());
      std::memcpy(ref.data().data(), orig.data(), orig.size());
      contents.reference = std::move(ref);
      io::Hdf5ExportOptions eo;
      eo.include_reference = true;
      eo.overwrite = true;
      if (j.contains("profile_file")) {
        const auto pbytes = read_file(profiles / j["profile_file"].get<std::string>());
        contents.calibration = io::Hdf5Calibration{j["profile_file"],
                                                   j["profile_file"].get<std::string>().substr(0, 16),
                                                   {pbytes.begin(), pbytes.end()}};
      }
      io::export_hdf5(out / (name + ".h5"), contents, eo);
      j["h5"] = name + ".h5";
    }
#endif
    std::ofstream(out / "manifest.json") << manifest.dump(1) << "\n";
    std::cout << manifest.size() << " streams in " << out << "\n";
  } catch (const std::exception& e) {
    std::cerr << "bitstream_make_corpus: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
