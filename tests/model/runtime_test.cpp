// SPDX-License-Identifier: Apache-2.0
// The model runtime on tiny random models the tests write themselves (GGUF
// and Hugging Face formats): loading, shapes, tokenizer, prefill,
// continuation, generation, errors and cancellation.
#include <gtest/gtest.h>

#include <cmath>

#include "kvscope/common/error.h"
#include "kvscope/io/gguf.h"
#include "kvscope/io/raw_cache.h"
#include "kvscope/kv/rope.h"
#include "kvscope/model/model.h"
#include "tiny_model.h"

using kvscope::Error;
using kvscope::ErrorCode;
using kvscope::kv::Kind;
using kvscope::model::Model;
using namespace kvscope::test;

namespace {

class TinyModel : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvscope_model_test_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write_gguf(const TinyWeights& w, std::uint32_t type = 0,
                                   const std::string& name = "tiny.gguf") {
    const auto p = dir_ / name;
    write_bytes(p, tiny_gguf_bytes(w, type));
    return p;
  }
  std::filesystem::path dir_;
};

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

std::vector<float> row(const std::vector<float>& logits, int vocab, int r) {
  return {logits.begin() + static_cast<std::ptrdiff_t>(r) * vocab,
          logits.begin() + static_cast<std::ptrdiff_t>(r + 1) * vocab};
}

kvscope::model::LoadOptions on_device(const std::string& device) {
  kvscope::model::LoadOptions o;
  o.device = device;
  return o;
}
kvscope::model::LoadOptions with_progress(kvscope::ProgressFn fn) {
  kvscope::model::LoadOptions o;
  o.progress = std::move(fn);
  return o;
}
kvscope::model::PrefillOptions with_pre_rope() {
  kvscope::model::PrefillOptions o;
  o.keep_pre_rope_keys = true;
  return o;
}

const std::vector<std::int32_t> kTokens = {72, 101, 258, 259, 32, 116, 257, 33, 10, 261, 50, 51};

}  // namespace

TEST_F(TinyModel, LoadsGgufWithDimsFromTheFile) {
  TinyDims d;
  d.layers = 3;
  const auto m = Model::load(write_gguf(TinyWeights(d)), on_device("cpu"));
  const auto& c = m->config();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.format, "gguf");
  EXPECT_EQ(c.layers, 3);
  EXPECT_EQ(c.heads, 4);
  EXPECT_EQ(c.kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.intermediate, 96);
  EXPECT_EQ(c.vocab, 262);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.kv_bytes_per_token(), 3u * 2 * 2 * 16 * 2);
  const std::int64_t per_layer = 2 * 64 + 64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 96;
  EXPECT_EQ(c.parameter_count, 262 * 64 + 64 + 3 * per_layer);
  EXPECT_EQ(m->device(), "cpu");
  EXPECT_GE(m->threads(), 1);
}

TEST_F(TinyModel, TokenizerEncodesMergesSpecialsAndRoundTrips) {
  const auto m = Model::load(write_gguf(TinyWeights(TinyDims{})));
  const auto& tok = m->tokenizer();
  // "hello the": "hello" -> he l l o ; " the" -> Ġt + he -> Ġthe.
  EXPECT_EQ(tok.encode("hello the"), (std::vector<std::int32_t>{257, 'l', 'l', 'o', 258}));
  EXPECT_EQ(tok.encode("in<|im_start|>in", true), (std::vector<std::int32_t>{261, 259, 261, 259}));
  for (const std::string text : {"hello the world", "naïve 日本 🚀\n\t  x", "<|endoftext|>ok"}) {
    EXPECT_EQ(tok.decode(tok.encode(text), true), text);
  }
  EXPECT_EQ(tok.decode(tok.encode("a<|endoftext|>b")), "ab");  // control tokens skipped by default
  EXPECT_EQ(tok.eos_id(), 260);
  EXPECT_EQ(tok.bos_id(), 261);
  EXPECT_THROW(tok.decode(std::vector<std::int32_t>{999}), Error);
}

TEST_F(TinyModel, HuggingFaceFolderAndGgufGiveTheSameCacheAndLogits) {
  // The GGUF stores Q/K rows permuted as llama.cpp's converter does; after
  // loading, both formats must produce identical keys (HF channel order).
  TinyWeights w{TinyDims{}};
  const auto g = Model::load(write_gguf(w));
  write_tiny_hf(w, dir_ / "hf");
  const auto h = Model::load(dir_ / "hf");
  EXPECT_EQ(h->config().format, "safetensors");
  EXPECT_EQ(h->config().layers, g->config().layers);
  EXPECT_EQ(h->tokenizer().encode("hello the"), g->tokenizer().encode("hello the"));
  const auto rg = g->prefill(kTokens), rh = h->prefill(kTokens);
  EXPECT_LT(kvscope::kv::max_abs_difference(rg.cache, rh.cache), 1e-5f);
  EXPECT_LT(max_diff(rg.last_logits, rh.last_logits), 1e-4f);
}

TEST_F(TinyModel, Qwen2StyleBiasesLoadAndMatchAcrossFormats) {
  TinyDims d;
  d.qkv_bias = true;
  d.tied = false;
  TinyWeights w(d);
  const auto g = Model::load(write_gguf(w));
  write_tiny_hf(w, dir_ / "hf");
  const auto h = Model::load(dir_ / "hf");
  EXPECT_TRUE(g->config().qkv_bias);
  EXPECT_FALSE(g->config().tied_embeddings);
  EXPECT_EQ(g->config().architecture, "qwen2");
  EXPECT_LT(max_diff(g->prefill(kTokens).last_logits, h->prefill(kTokens).last_logits), 1e-4f);
}

// The cache carries the frequencies the runtime rotated keys with, so
// kv::remove_rope() recovers the runtime's own pre-RoPE keys and apply_rope()
// gives back its post-RoPE keys (what codecs coding keys before RoPE rely on).
TEST_F(TinyModel, CacheRopeTablesLetCodecsRemoveAndReapplyTheRuntimesRope) {
  const auto m = Model::load(write_gguf(TinyWeights(TinyDims{})));
  const auto r = m->prefill(kTokens, with_pre_rope());
  ASSERT_EQ(r.cache.info.rope_inv_freq.size(), 2u);
  EXPECT_EQ(r.cache.info.rope_inv_freq[0].size(), 8u);
  kvscope::kv::KVCache removed = r.cache;
  kvscope::kv::remove_rope(removed);
  EXPECT_FALSE(removed.info.rope_applied);
  EXPECT_LT(kvscope::kv::max_abs_difference(removed, *r.pre_rope), 1e-5f);
  kvscope::kv::KVCache back = *r.pre_rope;
  back.info.rope_inv_freq = r.cache.info.rope_inv_freq;
  kvscope::kv::apply_rope(back);
  // Same float operations as the runtime's rotation: equal to the ulp.
  EXPECT_LT(kvscope::kv::max_abs_difference(back, r.cache), 1e-6f);
}

TEST_F(TinyModel, PrefillCacheHasShapeIdsPositionsAndPreRopeKeys) {
  const auto m = Model::load(write_gguf(TinyWeights(TinyDims{})));
  const auto r = m->prefill(kTokens, with_pre_rope());
  const auto& s = r.cache.shape();
  EXPECT_EQ(s.layers, 2);
  EXPECT_EQ(s.kv_heads, 2);
  EXPECT_EQ(s.tokens, static_cast<int>(kTokens.size()));
  EXPECT_EQ(s.head_dim, 16);
  EXPECT_EQ(r.cache.info.token_ids, kTokens);
  ASSERT_EQ(r.cache.info.positions.size(), kTokens.size());
  EXPECT_EQ(r.cache.info.positions.back(), static_cast<int>(kTokens.size()) - 1);
  EXPECT_TRUE(r.cache.info.rope_applied);
  EXPECT_EQ(r.last_logits.size(), 262u);
  ASSERT_TRUE(r.pre_rope.has_value());
  EXPECT_FALSE(r.pre_rope->info.rope_applied);
  // Token 0 sits at position 0, where RoPE is the identity; later keys differ.
  for (int c = 0; c < 16; ++c)
    EXPECT_FLOAT_EQ(r.pre_rope->at(1, Kind::Key, 1, 0, c), r.cache.at(1, Kind::Key, 1, 0, c));
  EXPECT_GT(std::fabs(r.pre_rope->at(1, Kind::Key, 1, 5, 0) - r.cache.at(1, Kind::Key, 1, 5, 0)), 1e-6f);
  // RoPE preserves the norm of each (i, i + d/2) pair.
  for (int i = 0; i < 8; ++i) {
    const float a0 = r.pre_rope->at(0, Kind::Key, 0, 7, i), a1 = r.pre_rope->at(0, Kind::Key, 0, 7, i + 8);
    const float b0 = r.cache.at(0, Kind::Key, 0, 7, i), b1 = r.cache.at(0, Kind::Key, 0, 7, i + 8);
    EXPECT_NEAR(a0 * a0 + a1 * a1, b0 * b0 + b1 * b1, 1e-4f);
  }
  // Values are the same in both.
  for (int l = 0; l < 2; ++l) {
    const auto v1 = r.cache.tensor(l, Kind::Value), v2 = r.pre_rope->tensor(l, Kind::Value);
    EXPECT_TRUE(std::equal(v1.begin(), v1.end(), v2.begin()));
  }
}

// ChannelWeights, recomputed here from the weights for layer 0 (whose input
// is the embedding): keys, the mean over tokens of the squared pre-RoPE
// queries of the KV head's query heads, summed over RoPE pairs; values, the
// squared norms of the output projection's columns.
TEST_F(TinyModel, ChannelWeightsAreQueryEnergiesAndOutputColumnNorms) {
  const TinyDims d;
  const TinyWeights tw(d);
  const auto m = Model::load(write_gguf(tw), on_device("cpu"));
  kvscope::model::PrefillOptions o;
  o.measure_channel_weights = true;
  const auto r = m->prefill(kTokens, o);
  ASSERT_TRUE(r.channel_weights.has_value());
  const int C = d.kv_heads * d.head_dim, hd = d.head_dim, g = d.heads / d.kv_heads, H = d.hidden;
  ASSERT_EQ(r.channel_weights->key.size(), std::size_t(d.layers) * C);
  ASSERT_EQ(r.channel_weights->value.size(), std::size_t(d.layers) * C);
  const auto& embd = tw.w.at("token_embd");
  const auto& norm = tw.w.at("blk.0.attn_norm");
  const auto& wq = tw.w.at("blk.0.attn_q");
  std::vector<double> energy(std::size_t(d.heads) * hd, 0.0);
  for (const auto t : kTokens) {
    const float* x = embd.data() + std::size_t(t) * H;
    double ms = 0;
    for (int i = 0; i < H; ++i) ms += double(x[i]) * x[i];
    const double inv = 1.0 / std::sqrt(ms / H + d.rms_eps);
    for (int row = 0; row < d.heads * hd; ++row) {
      double q = 0;
      for (int i = 0; i < H; ++i)
        q += double(wq[std::size_t(row) * H + i]) * x[i] * inv * norm[std::size_t(i)];
      energy[std::size_t(row)] += q * q;
    }
  }
  const auto& wo = tw.w.at("blk.0.attn_output");
  for (int h = 0; h < d.kv_heads; ++h)
    for (int c = 0; c < hd; ++c) {
      double key = 0, value = 0;
      for (int j = 0; j < g; ++j) {
        const int qh = h * g + j;
        key += energy[std::size_t(qh * hd + c % (hd / 2))] +
               energy[std::size_t(qh * hd + c % (hd / 2) + hd / 2)];
        for (int row = 0; row < H; ++row)
          value += std::pow(wo[std::size_t(row) * d.heads * hd + qh * hd + c], 2);
      }
      key /= double(kTokens.size());
      EXPECT_NEAR(r.channel_weights->key[std::size_t(h * hd + c)], key, 1e-3 * key) << h << " " << c;
      EXPECT_NEAR(r.channel_weights->value[std::size_t(h * hd + c)], value, 1e-4 * value) << h << " " << c;
    }
  // Without the option there is nothing to read.
  EXPECT_FALSE(m->prefill(kTokens).channel_weights.has_value());
}

TEST_F(TinyModel, ContinuationFromACacheMatchesAFullPrefill) {
  const auto m = Model::load(write_gguf(TinyWeights(TinyDims{})));
  const int V = m->config().vocab, T = static_cast<int>(kTokens.size());
  const auto prefix = m->prefill(std::span(kTokens).first(T - 3));
  const auto logits = m->continue_logits(prefix.cache, std::span(kTokens).last(3));
  ASSERT_EQ(logits.size(), static_cast<std::size_t>(3 * V));
  for (int r = 0; r < 3; ++r) {
    const auto full = m->prefill(std::span(kTokens).first(T - 2 + r));
    EXPECT_LT(max_diff(row(logits, V, r), full.last_logits), 1e-4f) << "row " << r;
  }
  // Pre-RoPE cache: continue_logits rotates the keys itself.
  const auto pre = m->prefill(std::span(kTokens).first(T - 3), with_pre_rope());
  EXPECT_LT(max_diff(m->continue_logits(*pre.pre_rope, std::span(kTokens).last(3)), logits), 1e-4f);
  // An empty cache is a plain forward from position 0.
  EXPECT_LT(max_diff(row(m->continue_logits(kvscope::kv::KVCache(), kTokens), V, T - 1),
                     m->prefill(kTokens).last_logits),
            1e-4f);
  // A cache saved to fp16 safetensors and read back continues almost identically.
  kvscope::io::save_cache(prefix.cache, dir_ / "c.safetensors");
  const auto loaded = kvscope::io::load_cache(dir_ / "c.safetensors");
  EXPECT_LT(max_diff(m->continue_logits(loaded, std::span(kTokens).last(3)), logits), 5e-2f);
}

TEST_F(TinyModel, GreedyGenerationFollowsArgmaxOfTheLogits) {
  const auto m = Model::load(write_gguf(TinyWeights(TinyDims{})));
  const int V = m->config().vocab;
  const auto cache = m->prefill(std::span(kTokens).first(6)).cache;
  const auto gen = m->generate(cache, std::span(kTokens).subspan(6), 5);
  ASSERT_EQ(gen.size(), 5u);
  // Teacher-force the generated ids and check each was the argmax.
  std::vector<std::int32_t> fed(kTokens.begin() + 6, kTokens.end());
  fed.insert(fed.end(), gen.begin(), gen.end() - 1);
  const auto logits = m->continue_logits(cache, fed);
  for (int i = 0; i < 5; ++i) {
    const auto r = row(logits, V, static_cast<int>(kTokens.size()) - 6 - 1 + i);
    EXPECT_EQ(std::max_element(r.begin(), r.end()) - r.begin(), gen[i]) << "step " << i;
  }
  EXPECT_TRUE(m->generate(cache, std::span(kTokens).subspan(6), 0).empty());
}

TEST_F(TinyModel, QuantizedGgufTypesLoadAndStayCloseToFloat) {
  TinyWeights w{TinyDims{}};
  const auto ref = Model::load(write_gguf(w, 0, "f32.gguf"))->prefill(kTokens).last_logits;
  struct Case {
    std::uint32_t type;
    float tol;
  };
  // Relative L2 error of the logits: 4-bit weights on a random model are
  // coarse, so the bound is loose for them and tight for 16/8-bit.
  for (const auto& c : {Case{1, 1e-2f}, Case{30, 0.1f}, Case{8, 0.15f}, Case{2, 1.5f}, Case{3, 1.0f}}) {
    const auto m = Model::load(write_gguf(w, c.type, "q" + std::to_string(c.type) + ".gguf"));
    const auto got = m->prefill(kTokens).last_logits;
    double num = 0, den = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      num += (got[i] - ref[i]) * (got[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    EXPECT_LT(std::sqrt(num / den), c.tol) << kvscope::io::ggml_type_name(c.type);
    std::printf("%s: relative logit error %.2e\n", kvscope::io::ggml_type_name(c.type).c_str(),
                std::sqrt(num / den));
  }
}

TEST_F(TinyModel, LongerPrefillUsesBlockedAttentionConsistently) {
  // 300 tokens: the attention runs in query blocks; compare against
  // continuing token by token from a prefix.
  const auto m = Model::load(write_gguf(TinyWeights(TinyDims{})));
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 300; ++i) ids.push_back((i * 37 + 11) % 262);
  const auto full = m->prefill(ids);
  const auto head = m->prefill(std::span(ids).first(290));
  const auto logits = m->continue_logits(head.cache, std::span(ids).last(10));
  EXPECT_LT(max_diff(row(logits, 262, 9), full.last_logits), 1e-3f);
}

TEST_F(TinyModel, BadInputsAreClearErrors) {
  const auto m = Model::load(write_gguf(TinyWeights(TinyDims{})));
  EXPECT_THROW(m->prefill(std::vector<std::int32_t>{}), Error);
  EXPECT_THROW(m->prefill(std::vector<std::int32_t>{1, 262}), Error);
  EXPECT_THROW(m->prefill(std::vector<std::int32_t>{-1}), Error);
  kvscope::kv::KVCache wrong(kvscope::kv::CacheShape{3, 2, 4, 16});
  try {
    m->continue_logits(wrong, std::vector<std::int32_t>{1});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Model::load(dir_ / "tiny.gguf", on_device("tpu")), Error);
}

TEST_F(TinyModel, CorruptTruncatedOrMismatchedFilesNameTheFile) {
  TinyWeights w{TinyDims{}};
  const auto good = tiny_gguf_bytes(w);
  auto expect_error = [&](const std::filesystem::path& p, const std::string& needle) {
    try {
      Model::load(p);
      FAIL() << "loaded " << p;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto b = good;
  b.resize(b.size() / 2);
  write_bytes(dir_ / "truncated.gguf", b);
  expect_error(dir_ / "truncated.gguf", "truncated");
  b = good;
  b[0] ^= 0xFF;
  write_bytes(dir_ / "magic.gguf", b);
  expect_error(dir_ / "magic.gguf", "magic");
  expect_error(dir_ / "absent.gguf", "does not exist");
  // A tensor whose shape disagrees with the config.
  TinyWeights w2{TinyDims{}};
  w2.shape["blk.1.ffn_up"] = {64, 96};
  write_bytes(dir_ / "shape.gguf", tiny_gguf_bytes(w2));
  expect_error(dir_ / "shape.gguf", "blk.1.ffn_up");
  // HF folder: config broken, weights missing.
  write_tiny_hf(w, dir_ / "hf");
  std::ofstream(dir_ / "hf" / "config.json") << "{ not json";
  expect_error(dir_ / "hf", "config.json");
  write_tiny_hf(w, dir_ / "hf2");
  std::filesystem::remove(dir_ / "hf2" / "model.safetensors");
  expect_error(dir_ / "hf2", "hf2");
}

TEST_F(TinyModel, ProgressReportsAndCancels) {
  const auto path = write_gguf(TinyWeights(TinyDims{}));
  int calls = 0;
  double last = -1;
  const auto m = Model::load(path, with_progress([&](double f, std::string_view) {
                               EXPECT_GE(f, last);
                               last = f;
                               ++calls;
                               return true;
                             }));
  EXPECT_GT(calls, 10);
  EXPECT_DOUBLE_EQ(last, 1.0);
  try {
    Model::load(path, with_progress([](double f, std::string_view) { return f < 0.5; }));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Cancelled);
  }
  int layers_seen = 0;
  try {
    kvscope::model::PrefillOptions o;
    o.progress = [&](double, std::string_view stage) {
      if (stage.starts_with("layer")) ++layers_seen;
      return layers_seen < 1;
    };
    m->prefill(kTokens, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Cancelled);
  }
  EXPECT_EQ(layers_seen, 1);
}

TEST(SentencePieceTokenizer, MergesByScoreAndFallsBackToBytes) {
  using kvscope::model::Tokenizer;
  using kvscope::model::TokenizerSpec;
  TokenizerSpec s;
  s.kind = TokenizerSpec::Kind::SentencePieceBpe;
  s.tokens = {"<unk>", "<s>", "</s>"};
  s.token_types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    s.tokens.emplace_back(name);
    s.token_types.push_back(6);
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {"▁", -10}, {"h", -10}, {"e", -10},  {"l", -10},  {"o", -10},     {"w", -10}, {"r", -10}, {"d", -10},
      {"he", -1}, {"ll", -2}, {"▁he", -3}, {"llo", -4}, {"▁hello", -5}, {"or", -6}, {"▁w", -7}};
  s.scores.assign(s.tokens.size(), 0.f);
  for (const auto& [p, score] : pieces) {
    s.tokens.push_back(p);
    s.token_types.push_back(1);
    s.scores.push_back(score);
  }
  s.bos_id = 1;
  s.eos_id = 2;
  s.unk_id = 0;
  s.add_bos = true;
  s.add_space_prefix = true;
  const Tokenizer tok(s);
  auto id = [&](const std::string& t) {
    return static_cast<std::int32_t>(std::find(s.tokens.begin(), s.tokens.end(), t) - s.tokens.begin());
  };
  // Highest score first: he, ll, ▁he, llo, ▁hello, then or, ▁w.
  EXPECT_EQ(tok.encode("hello world", true),
            (std::vector<std::int32_t>{1, id("▁hello"), id("▁w"), id("or"), id("l"), id("d")}));
  // "é" is not in the vocabulary: its UTF-8 bytes become <0xC3> <0xA9>.
  EXPECT_EQ(tok.encode("hé"), (std::vector<std::int32_t>{id("▁"), id("h"), id("<0xC3>"), id("<0xA9>")}));
  EXPECT_EQ(tok.decode(tok.encode("hello world", true)), "hello world");
  EXPECT_EQ(tok.decode(tok.encode("hé wor")), "hé wor");
  EXPECT_TRUE(tok.adds_bos());
}

TEST_F(TinyModel, ShardedHuggingFaceFolderLoadsThroughItsIndex) {
  TinyWeights w{TinyDims{}};
  write_tiny_hf(w, dir_ / "one");
  const auto single = Model::load(dir_ / "one")->prefill(kTokens).last_logits;
  // Split model.safetensors into two shards listed by model.safetensors.index.json.
  const auto full = kvscope::io::SafetensorsFile(dir_ / "one" / "model.safetensors");
  std::vector<kvscope::io::SafetensorsWriteTensor> a, b;
  nlohmann::json map = nlohmann::json::object();
  for (const auto& t : full.tensors()) {
    const bool first = t.name.find("layers.1.") == std::string::npos;
    (first ? a : b)
        .push_back({t.name, t.dtype, t.shape, std::vector<std::uint8_t>(t.bytes.begin(), t.bytes.end())});
    map[t.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  std::filesystem::create_directories(dir_ / "sharded");
  for (const char* f : {"config.json", "tokenizer.json"})
    std::filesystem::copy(dir_ / "one" / f, dir_ / "sharded" / f);
  write_bytes(dir_ / "sharded" / "model-00001-of-00002.safetensors", kvscope::io::build_safetensors(a, {}));
  write_bytes(dir_ / "sharded" / "model-00002-of-00002.safetensors", kvscope::io::build_safetensors(b, {}));
  std::ofstream(dir_ / "sharded" / "model.safetensors.index.json")
      << nlohmann::json{{"weight_map", map}}.dump();
  const auto m = Model::load(dir_ / "sharded");
  EXPECT_EQ(max_diff(m->prefill(kTokens).last_logits, single), 0.f);
  EXPECT_EQ(m->config().parameter_count, Model::load(dir_ / "one")->config().parameter_count);
}

TEST_F(TinyModel, Llama3RopeScalingIsReadFromConfig) {
  TinyWeights w{TinyDims{}};
  write_tiny_hf(w, dir_ / "hf");
  const auto plain = Model::load(dir_ / "hf")->prefill(kTokens).last_logits;
  auto set_scaling = [&](double factor) {
    auto cfg = nlohmann::json::parse(std::ifstream(dir_ / "hf" / "config.json"));
    cfg["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", factor},
                           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0},
                           {"original_max_position_embeddings", 16}};
    std::ofstream(dir_ / "hf" / "config.json") << cfg.dump();
  };
  set_scaling(1.0);  // factor 1 leaves every frequency unchanged
  auto m = Model::load(dir_ / "hf");
  EXPECT_EQ(m->config().rope_scaling_type, "llama3");
  EXPECT_EQ(m->config().rope_original_context, 16);
  EXPECT_LT(max_diff(m->prefill(kTokens).last_logits, plain), 1e-5f);
  set_scaling(8.0);  // low frequencies slowed down: different logits
  m = Model::load(dir_ / "hf");
  EXPECT_DOUBLE_EQ(m->config().rope_scaling_factor, 8.0);
  EXPECT_GT(max_diff(m->prefill(kTokens).last_logits, plain), 1e-4f);
}
