// SPDX-License-Identifier: Apache-2.0
// The default model against golden references produced by an independent
// implementation (tests/model/make_golden.py: Hugging Face `tokenizers` and a
// float64 numpy forward pass on weights dequantized by the `gguf` package).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvscope/model/model.h"
#include "test_model.h"

using kvscope::kv::Kind;
using kvscope::model::Model;

namespace {

// Tolerances, stated once. Measured when the goldens were made: logits
// differ by at most 1.2e-5 (top 64) and K/V by at most 4.7e-6; the bounds
// leave room for BLAS summation order on other machines.
// Logits: float32 forward vs float64 reference over 30 layers.
constexpr float kLogitTol = 5e-4f;
// K/V of layers 0, 15, 29 (reference rounded to 6 decimals).
constexpr float kKvTol = 1e-4f;

nlohmann::json golden(const char* name) {
  std::ifstream in(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/model/golden" / name);
  EXPECT_TRUE(in) << name;
  return nlohmann::json::parse(in);
}

const Model& default_model(const std::filesystem::path& path) {
  static std::unique_ptr<Model> m = Model::load(path);
  return *m;
}

}  // namespace

TEST(GoldenDefaultModel, TokenIdsMatchHuggingFaceTokenizers) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  const auto g = golden("smollm2_tokens.json");
  const auto& tok = default_model(path).tokenizer();
  const auto ids = tok.encode(g["text"].get<std::string>());
  const auto want = g["ids"].get<std::vector<std::int32_t>>();
  ASSERT_EQ(ids.size(), want.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(ids[i], want[i]) << "first difference at token " << i << " (" << tok.token_text(want[i])
                               << " vs " << tok.token_text(ids[i]) << ")";
  }
  EXPECT_EQ(tok.decode(ids, true), g["decoded"].get<std::string>());
  EXPECT_EQ(tok.decode(ids, true), g["text"].get<std::string>());
}

TEST(GoldenDefaultModel, NextTokenLogitsAndCacheMatchTheReferenceForward) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  const auto g = golden("smollm2_forward.json");
  const Model& m = default_model(path);
  const auto ids = m.tokenizer().encode(g["prompt"].get<std::string>());
  ASSERT_EQ(ids, g["prompt_ids"].get<std::vector<std::int32_t>>());
  const auto r = m.prefill(ids);
  const auto top_ids = g["top_ids"].get<std::vector<int>>();
  const auto top_logits = g["top_logits"].get<std::vector<double>>();
  const auto argmax = std::max_element(r.last_logits.begin(), r.last_logits.end()) - r.last_logits.begin();
  EXPECT_EQ(argmax, top_ids[0]) << "top-1 differs";
  double worst = 0;
  for (std::size_t i = 0; i < top_ids.size(); ++i) {
    worst = std::max(worst, std::fabs(r.last_logits[top_ids[i]] - top_logits[i]));
  }
  EXPECT_LT(worst, kLogitTol) << "largest |logit - reference| over the top " << top_ids.size();
  // logsumexp over the whole vocabulary checks every logit at once.
  double mx = *std::max_element(r.last_logits.begin(), r.last_logits.end()), sum = 0;
  for (float v : r.last_logits) sum += std::exp(v - mx);
  EXPECT_NEAR(mx + std::log(sum), g["logsumexp"].get<double>(), kLogitTol);
  std::printf("golden: max |logit diff| over top-%zu = %.2e\n", top_ids.size(), worst);

  const int T = static_cast<int>(ids.size()), nkv = m.config().kv_heads, hd = m.config().head_dim;
  for (int layer : g["layers"].get<std::vector<int>>()) {
    for (auto kind : {Kind::Key, Kind::Value}) {
      const auto want =
          g[kind == Kind::Key ? "keys" : "values"][std::to_string(layer)].get<std::vector<float>>();
      ASSERT_EQ(want.size(), static_cast<std::size_t>(nkv * T * hd));
      const auto got = r.cache.tensor(layer, kind);
      float err = 0;
      for (std::size_t i = 0; i < want.size(); ++i) err = std::max(err, std::fabs(got[i] - want[i]));
      EXPECT_LT(err, kKvTol) << "layer " << layer << " " << kvscope::kv::to_string(kind);
      std::printf("golden: layer %d %s max |diff| = %.2e\n", layer, kvscope::kv::to_string(kind), err);
    }
  }
}

TEST(GoldenDefaultModel, GreedyContinuationOfThePromptIsParis) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(path);
  const Model& m = default_model(path);
  const auto ids = m.tokenizer().encode("The capital of France is");
  const auto out = m.generate(kvscope::kv::KVCache(), ids, 2);
  EXPECT_EQ(m.tokenizer().decode(out).substr(0, 6), " Paris");
}

// A real Gemma 3 file (Q4_K, Q6_K, Q5_0, Q8_0 tensors; sliding-window and
// global layers) against a float64 numpy forward on weights the `gguf`
// package dequantized (tests/model/make_gemma3_golden.py). Optional model:
// scripts/fetch-extra-models.sh fetches it.
TEST(GoldenGemma3, LogitsAndCacheOfARealQ4KMFileMatchTheReferenceForward) {
  const auto path = kvscope::model_dir() / "gemma-3-270m-q4_k_m.gguf";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    GTEST_SKIP() << "optional model absent (scripts/fetch-extra-models.sh fetches it): " << path;
  const auto g = golden("gemma3_270m_forward.json");
  for (const std::string weights : {"file", "float32"}) {
    kvscope::model::LoadOptions o;
    o.weights = weights;
    const auto m = Model::load(path, o);
    const auto ids = m->tokenizer().encode(g["prompt"].get<std::string>(), /*add_bos=*/true);
    ASSERT_EQ(ids, g["prompt_ids"].get<std::vector<std::int32_t>>());
    const auto r = m->prefill(ids);
    const auto top_ids = g["top_ids"].get<std::vector<int>>();
    const auto top_logits = g["top_logits"].get<std::vector<double>>();
    const auto argmax = std::max_element(r.last_logits.begin(), r.last_logits.end()) - r.last_logits.begin();
    EXPECT_EQ(argmax, top_ids[0]) << weights;
    double worst = 0;
    for (std::size_t i = 0; i < top_ids.size(); ++i)
      worst = std::max(worst, std::fabs(r.last_logits[top_ids[i]] - top_logits[i]));
    EXPECT_LT(worst, kLogitTol) << weights << ": largest |logit - reference| over the top " << top_ids.size();
    std::printf("gemma3 %s: max |logit diff| over top-%zu = %.2e\n", weights.c_str(), top_ids.size(), worst);
    const int T = static_cast<int>(ids.size()), nkv = m->config().kv_heads, hd = m->config().head_dim;
    for (int layer : g["layers"].get<std::vector<int>>()) {
      for (auto kind : {Kind::Key, Kind::Value}) {
        const auto want =
            g[kind == Kind::Key ? "keys" : "values"][std::to_string(layer)].get<std::vector<float>>();
        ASSERT_EQ(want.size(), static_cast<std::size_t>(nkv * T * hd));
        const auto got = r.cache.tensor(layer, kind);
        float err = 0, mag = 0;
        for (std::size_t i = 0; i < want.size(); ++i) {
          err = std::max(err, std::fabs(got[i] - want[i]));
          mag = std::max(mag, std::fabs(want[i]));
        }
        // Relative to the largest value: Gemma's values reach the hundreds.
        EXPECT_LT(err, kKvTol * std::max(1.f, mag)) << weights << " layer " << layer;
        std::printf("gemma3 %s: layer %d %s max |diff| = %.2e (max |value| %.1f)\n", weights.c_str(), layer,
                    kvscope::kv::to_string(kind), err, mag);
      }
    }
  }
}
