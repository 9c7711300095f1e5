// SPDX-License-Identifier: Apache-2.0
// Qwen3, Gemma 2, Gemma 3 and Phi-3 on tiny models written by the test in
// both formats (GGUF as llama.cpp lays it out, Hugging Face as transformers
// does), against golden logits and K/V from an independent float64 numpy
// forward (tests/model/make_arch_golden.py, which builds the same weights).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "kvscope/kv/rope.h"
#include "kvscope/kv/stats.h"
#include "kvscope/model/model.h"
#include "tiny_model.h"

using kvscope::kv::Kind;
using kvscope::model::Model;
using namespace kvscope::test;

namespace {

// float32 forward vs float64 reference on a 2-6 layer model; measured
// differences are below 1e-5.
constexpr float kLogitTol = 2e-4f;
constexpr float kKvTol = 1e-4f;

const nlohmann::json& golden() {
  static const nlohmann::json g = nlohmann::json::parse(
      std::ifstream(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/model/golden/architectures.json"));
  return g;
}

TinyDims dims_of(const nlohmann::json& j) {
  TinyDims d;
  d.arch = j.at("arch").get<std::string>();
  d.layers = j.at("layers");
  d.hidden = j.at("hidden");
  d.heads = j.at("heads");
  d.kv_heads = j.at("kv_heads");
  d.head_dim = j.at("head_dim");
  d.intermediate = j.at("intermediate");
  d.rope_theta = j.at("rope_theta");
  d.rms_eps = j.at("rms_eps");
  d.tied = j.at("tied");
  d.attn_softcap = j.value("attn_softcap", 0.0);
  d.final_softcap = j.value("final_softcap", 0.0);
  d.query_pre_attn_scalar = j.value("query_pre_attn_scalar", 0.0);
  d.sliding_window = j.value("sliding_window", 0);
  d.rope_local_theta = j.value("rope_local_theta", 0.0);
  d.rope_linear_factor = j.value("rope_linear_factor", 0.0);
  d.context_length = j.value("context_length", 256);
  d.original_context = j.value("original_context", 0);
  return d;
}

class Architectures : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kvscope_arch_test_" + GetParam());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

void expect_matches_golden(const Model& m, const nlohmann::json& g, const std::string& what) {
  const auto tokens = golden()["tokens"].get<std::vector<std::int32_t>>();
  const auto r = m.prefill(tokens);
  const auto want = g["logits"].get<std::vector<double>>();
  ASSERT_EQ(r.last_logits.size(), want.size());
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(r.last_logits[i] - want[i]));
  EXPECT_LT(worst, kLogitTol) << what << ": largest |logit - reference|";
  const int layers = m.config().layers;
  float worst_kv = 0;
  for (int l = 0; l < layers; ++l) {
    for (auto kind : {Kind::Key, Kind::Value}) {
      const auto ref = g[kind == Kind::Key ? "keys" : "values"][l].get<std::vector<float>>();
      const auto got = r.cache.tensor(l, kind);
      ASSERT_EQ(got.size(), ref.size()) << what;
      float err = 0;
      for (std::size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::fabs(got[i] - ref[i]));
      EXPECT_LT(err, kKvTol) << what << " layer " << l << " " << kvscope::kv::to_string(kind);
      worst_kv = std::max(worst_kv, err);
    }
  }
  std::printf("%s: max |logit diff| %.2e, max |K/V diff| %.2e\n", what.c_str(), worst, worst_kv);
}

kvscope::model::LoadOptions storage(const std::string& weights) {
  kvscope::model::LoadOptions o;
  o.weights = weights;
  return o;
}

}  // namespace

TEST_P(Architectures, GgufAndHuggingFaceFoldersMatchTheReferenceForward) {
  const auto& g = golden()["models"][GetParam()];
  const TinyDims d = dims_of(g["dims"]);
  const TinyWeights w(d, 7, /*portable=*/true);
  write_bytes(dir_ / "tiny.gguf", tiny_gguf_bytes(w));
  write_tiny_hf(w, dir_ / "hf");
  for (const std::string weights : {"float32", "file"}) {
    const auto gg = Model::load(dir_ / "tiny.gguf", storage(weights));
    EXPECT_EQ(gg->config().architecture, GetParam());
    EXPECT_EQ(gg->config().weight_storage, weights);
    expect_matches_golden(*gg, g, GetParam() + " gguf " + weights);
    const auto hf = Model::load(dir_ / "hf", storage(weights));
    EXPECT_EQ(hf->config().architecture, GetParam());
    expect_matches_golden(*hf, g, GetParam() + " hf " + weights);
    EXPECT_EQ(hf->config().layer_window, gg->config().layer_window);
  }
}

TEST_P(Architectures, SlidingWindowLayersAndRopeFrequenciesAreReported) {
  const auto& g = golden()["models"][GetParam()];
  const TinyDims d = dims_of(g["dims"]);
  write_bytes(dir_ / "tiny.gguf", tiny_gguf_bytes(TinyWeights(d, 7, true)));
  const auto m = Model::load(dir_ / "tiny.gguf");
  const auto& c = m->config();
  std::vector<int> expect;
  for (int l = 0; l < d.layers && d.sliding_window > 0; ++l) {
    bool sliding = true;
    if (d.arch == "gemma2") sliding = l % 2 == 0;
    if (d.arch == "gemma3") sliding = (l + 1) % 6 != 0;
    expect.push_back(sliding ? d.sliding_window : 0);
  }
  EXPECT_EQ(c.layer_window, expect);
  EXPECT_EQ(c.has_sliding_window(), d.sliding_window > 0);
  for (int l = 0; l < d.layers; ++l) {
    const auto f = m->rope_inv_freq(l);
    ASSERT_EQ(static_cast<int>(f.size()), d.head_dim / 2);
    // Frequency 0 is base^0 = 1 unless scaled: Gemma 3's global layers divide
    // by the linear factor, Phi-3 by its first short factor.
    double f0 = 1.0;
    const bool local = !expect.empty() && expect[l] > 0;
    if (d.arch == "gemma3" && !local) f0 = 1.0 / d.rope_linear_factor;
    if (d.arch == "phi3") f0 = 1.0 / TinyWeights(d, 7, true).w.at("rope_factors_short")[0];
    EXPECT_NEAR(f[0], f0, 1e-6) << "layer " << l;
    const double base = d.arch == "gemma3" && local ? d.rope_local_theta : d.rope_theta;
    if (d.arch != "phi3") {
      const double scale = d.arch == "gemma3" && !local ? d.rope_linear_factor : 1.0;
      EXPECT_NEAR(f[1], std::pow(base, -2.0 / d.head_dim) / scale, 1e-7) << "layer " << l;
    }
  }
  EXPECT_THROW(m->rope_inv_freq(d.layers), kvscope::Error);

  // The cache carries the windows and every layer's RoPE table, so
  // kv::remove_rope() recovers the runtime's own pre-RoPE keys even where
  // layers rotate differently (Gemma 3's local and global bases).
  kvscope::model::PrefillOptions o;
  o.keep_pre_rope_keys = true;
  const auto r = m->prefill(golden()["tokens"].get<std::vector<std::int32_t>>(), o);
  std::vector<std::int32_t> windows(expect.begin(), expect.end());
  EXPECT_EQ(r.cache.info.layer_window, windows);
  ASSERT_EQ(static_cast<int>(r.cache.info.rope_inv_freq.size()), d.layers);
  for (int l = 0; l < d.layers; ++l) {
    const auto f = m->rope_inv_freq(l);
    ASSERT_EQ(r.cache.info.rope_inv_freq[l].size(), f.size());
    EXPECT_EQ(r.cache.info.rope_inv_freq[l], f);
  }
  kvscope::kv::KVCache removed = r.cache;
  kvscope::kv::remove_rope(removed);
  EXPECT_LT(kvscope::kv::max_abs_difference(removed, *r.pre_rope), 1e-5f);
}

TEST_P(Architectures, ContinuationOverTheCacheMatchesAFullPrefill) {
  // Sliding windows and per-layer RoPE must hold when the context comes from
  // a cache (keys after RoPE) or from keys stored before RoPE.
  const auto& g = golden()["models"][GetParam()];
  write_bytes(dir_ / "tiny.gguf", tiny_gguf_bytes(TinyWeights(dims_of(g["dims"]), 7, true)));
  const auto m = Model::load(dir_ / "tiny.gguf");
  const auto tokens = golden()["tokens"].get<std::vector<std::int32_t>>();
  const int T = static_cast<int>(tokens.size());
  kvscope::model::PrefillOptions o;
  o.keep_pre_rope_keys = true;
  const auto head = m->prefill(std::span(tokens).first(T - 3), o);
  const auto full = m->prefill(tokens);
  const int V = m->config().vocab;
  for (const auto* cache : {&head.cache, &*head.pre_rope}) {
    const auto logits = m->continue_logits(*cache, std::span(tokens).last(3));
    float err = 0;
    for (int i = 0; i < V; ++i) err = std::max(err, std::fabs(logits[2 * V + i] - full.last_logits[i]));
    EXPECT_LT(err, 1e-4f) << (cache == &head.cache ? "after RoPE" : "before RoPE");
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, Architectures, ::testing::Values("qwen3", "gemma2", "gemma3", "phi3"),
                         [](const auto& info) { return info.param; });

TEST(ArchitectureErrors, UnsupportedArchitectureAndPartialRopeNameTheProblem) {
  const auto dir = std::filesystem::temp_directory_path() / "kvscope_arch_errors";
  std::filesystem::create_directories(dir);
  TinyDims d;
  d.arch = "falcon";
  try {
    write_bytes(dir / "falcon.gguf", tiny_gguf_bytes(TinyWeights(d)));
    Model::load(dir / "falcon.gguf");
    FAIL();
  } catch (const kvscope::Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.code(), kvscope::ErrorCode::Unsupported);
    EXPECT_NE(what.find("falcon"), std::string::npos) << what;
    EXPECT_NE(what.find("gemma3"), std::string::npos) << what;
    EXPECT_NE(what.find("falcon.gguf"), std::string::npos) << what;
  }
  d.arch = "phi3";
  write_tiny_hf(TinyWeights(d), dir / "phi4");
  auto cfg = nlohmann::json::parse(std::ifstream(dir / "phi4" / "config.json"));
  cfg["partial_rotary_factor"] = 0.75;
  std::ofstream(dir / "phi4" / "config.json") << cfg.dump();
  try {
    Model::load(dir / "phi4");
    FAIL();
  } catch (const kvscope::Error& e) {
    EXPECT_NE(std::string(e.what()).find("partial rotary"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(SlidingWindowCaches, EveryCodecAndTheStatisticsHandleThem) {
  // A Gemma 3 cache (sliding and global layers with different RoPE bases)
  // through statistics and every codec: decoded caches keep the windows and
  // RoPE tables and stay finite and close.
  const auto& g = golden()["models"]["gemma3"];
  const auto dir = std::filesystem::temp_directory_path() / "kvscope_sliding_codecs";
  std::filesystem::create_directories(dir);
  write_bytes(dir / "tiny.gguf", tiny_gguf_bytes(TinyWeights(dims_of(g["dims"]), 7, true)));
  const auto m = Model::load(dir / "tiny.gguf");
  std::filesystem::remove_all(dir);
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 64; ++i) ids.push_back((i * 37 + 11) % 262);
  const auto cache = m->prefill(ids).cache;
  ASSERT_FALSE(cache.info.layer_window.empty());
  const auto stats = kvscope::kv::compute_stats(cache);
  EXPECT_EQ(static_cast<int>(stats.tensors.size()), 2 * cache.shape().layers);
  float range = 0;
  for (float v : cache.data()) range = std::max(range, std::fabs(v));
  for (const auto* codec : kvscope::codec::all_codecs()) {
    SCOPED_TRACE(codec->name());
    // transform at its default 2 bits drops whole components of this tiny
    // random model's cache (nothing to compact), so its error can exceed
    // any per-value bound: a generous budget tests the windows and tables.
    const auto params =
        codec->name() == "transform" ? kvscope::codec::ParamSet{{"bits", "10"}} : kvscope::codec::ParamSet{};
    const auto encoded = codec->encode(cache, params);
    const auto decoded = kvscope::codec::decode(encoded.bytes);
    ASSERT_EQ(decoded.shape(), cache.shape());
    EXPECT_EQ(decoded.info.layer_window, cache.info.layer_window);
    EXPECT_EQ(decoded.info.rope_inv_freq, cache.info.rope_inv_freq);
    float err = 0;
    for (std::size_t i = 0; i < cache.data().size(); ++i) {
      ASSERT_TRUE(std::isfinite(decoded.data()[i]));
      err = std::max(err, std::fabs(decoded.data()[i] - cache.data()[i]));
    }
    EXPECT_LT(err, 0.5f * range) << "largest error against the cache's largest |value| " << range;
  }
}

TEST(LoadErrors, UnsupportedTypeMissingTokenizerAndArchitectureSayExactlyWhy) {
  const auto dir = std::filesystem::temp_directory_path() / "kvscope_load_errors";
  std::filesystem::create_directories(dir);
  auto expect_error = [](const std::filesystem::path& p, std::vector<std::string> needles) {
    try {
      Model::load(p);
      FAIL() << "loaded " << p;
    } catch (const kvscope::Error& e) {
      EXPECT_EQ(e.code(), kvscope::ErrorCode::Unsupported) << e.what();
      needles.push_back(p.filename().string());
      for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  };
  // A tensor type KVScope cannot dequantize (IQ2_XXS, 66 bytes per 256 values).
  TinyDims d;
  d.hidden = 256;
  d.intermediate = 256;
  d.heads = 4;
  d.kv_heads = 2;
  d.head_dim = 64;
  auto bytes = tiny_gguf_bytes(TinyWeights(d), 14);  // Q6_K matrices
  // blk.0.ffn_up (Q6_K, 210 bytes per block) relabelled IQ2_XXS (66): its data still fits the file.
  ASSERT_EQ(retype_tensor(bytes, "blk.0.ffn_up.weight", 2, 16), 14u);
  write_bytes(dir / "iq2.gguf", bytes);
  expect_error(dir / "iq2.gguf", {"IQ2_XXS", "blk.0.ffn_up.weight", "Q4_K"});
  // GGUF without tokenizer metadata.
  write_bytes(dir / "notok.gguf",
              build_gguf({{"general.architecture", 8, std::string("llama")},
                          {"llama.block_count", 4, std::uint64_t(1)},
                          {"llama.embedding_length", 4, std::uint64_t(32)},
                          {"llama.feed_forward_length", 4, std::uint64_t(32)},
                          {"llama.attention.head_count", 4, std::uint64_t(2)}},
                         {{"token_embd.weight", {32, 8}, 0, encode_f32(std::vector<float>(256))}}));
  expect_error(dir / "notok.gguf", {"no tokenizer", "tokenizer.ggml.model"});
  // Hugging Face folder without tokenizer.json.
  write_tiny_hf(TinyWeights(TinyDims{}), dir / "hf");
  std::filesystem::remove(dir / "hf" / "tokenizer.json");
  expect_error(dir / "hf", {"tokenizer.json"});
  std::filesystem::remove_all(dir);
}

TEST(SlidingWindowCaches, AttentionToCacheGivesNothingOutsideAWindow) {
  // Gemma 2: layer 0 slides (window 4), layer 1 attends to everything.
  const auto& g = golden()["models"]["gemma2"];
  const auto dir = std::filesystem::temp_directory_path() / "kvscope_sliding_attention";
  std::filesystem::create_directories(dir);
  write_bytes(dir / "tiny.gguf", tiny_gguf_bytes(TinyWeights(dims_of(g["dims"]), 7, true)));
  const auto m = Model::load(dir / "tiny.gguf");
  std::filesystem::remove_all(dir);
  const auto tokens = golden()["tokens"].get<std::vector<std::int32_t>>();
  const auto cache = m->prefill(std::span(tokens).first(9)).cache;
  const auto drawn = m->attention_to_cache(cache, std::span(tokens).last(3));
  ASSERT_EQ(drawn.size(), 2u * 9u);
  // The fed tokens sit at positions 9..11: with a window of 4 they see keys 6..11.
  for (int t = 0; t < 9; ++t) {
    if (t < 6) {
      EXPECT_EQ(drawn[t], 0.f) << "sliding layer, cached token " << t;
    } else {
      EXPECT_GT(drawn[t], 0.f) << "sliding layer, cached token " << t;
    }
    EXPECT_GT(drawn[9 + t], 0.f) << "full layer, cached token " << t;
  }
  for (int l = 0; l < 2; ++l) {
    double sum = 0;
    for (int t = 0; t < 9; ++t) sum += drawn[l * 9 + t];
    EXPECT_LE(sum, 1.0 + 1e-6) << "layer " << l;
  }
}
