// SPDX-License-Identifier: Apache-2.0
// Tokenizers of the Qwen3 (byte-level BPE) and Phi-3 / Gemma (SentencePiece
// BPE) families against ids produced by independent references: Hugging Face
// `tokenizers` and Google's `sentencepiece` (tests/model/make_tokenizer_golden.py).
#include "kvscope/model/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "kvscope/common/paths.h"
#include "kvscope/model/model.h"

using kvscope::model::Tokenizer;
using kvscope::model::TokenizerSpec;

namespace {

const std::filesystem::path kDir =
    std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/model/golden/tokenizers";

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in) << p;
  return nlohmann::json::parse(in);
}

void expect_ids(const Tokenizer& tok, const nlohmann::json& texts, const nlohmann::json& ids,
                bool round_trip) {
  ASSERT_EQ(texts.size(), ids.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto text = texts[i].get<std::string>();
    const auto want = ids[i].get<std::vector<std::int32_t>>();
    const auto got = tok.encode(text);
    ASSERT_EQ(got.size(), want.size()) << "text " << i << ": " << text;
    for (std::size_t k = 0; k < got.size(); ++k) {
      ASSERT_EQ(got[k], want[k]) << "text " << i << " token " << k << ": '" << tok.token_text(want[k])
                                 << "' vs '" << tok.token_text(got[k]) << "'";
    }
    if (round_trip) {
      EXPECT_EQ(tok.decode(got, true), text) << "text " << i;
    }
  }
}

TokenizerSpec spm_spec(bool dummy_prefix) {
  const auto j = read_json(kDir / "spm_bpe.json");
  TokenizerSpec s;
  s.kind = TokenizerSpec::Kind::SentencePieceBpe;
  s.tokens = j["tokens"].get<std::vector<std::string>>();
  s.scores = j["scores"].get<std::vector<float>>();
  s.token_types = j["types"].get<std::vector<std::int32_t>>();
  s.bos_id = j["bos_id"];
  s.eos_id = j["eos_id"];
  s.unk_id = j["unk_id"];
  s.add_space_prefix = dummy_prefix;
  return s;
}

}  // namespace

TEST(Tokenizers, Qwen3StyleByteLevelBpeMatchesHuggingFaceTokenizers) {
  const auto g = read_json(kDir / "tokenizer_golden.json");
  const Tokenizer tok(kvscope::model::tokenizer_spec_from_hf(kDir / "qwen3_tokenizer.json"));
  EXPECT_EQ(tok.spec().kind, TokenizerSpec::Kind::ByteLevelBpe);
  expect_ids(tok, g["texts"], g["qwen3"], /*round_trip=*/true);
}

TEST(Tokenizers, Phi3StyleSentencePieceMatchesSentencePiece) {
  // Llama 2 / Phi-3: a dummy-prefix space before the text.
  const auto g = read_json(kDir / "tokenizer_golden.json");
  const Tokenizer tok(spm_spec(true));
  expect_ids(tok, g["texts"], g["spm_dummy_prefix"], /*round_trip=*/false);
}

TEST(Tokenizers, GemmaStyleSentencePieceMatchesSentencePiece) {
  // Gemma: no dummy prefix; whitespace runs are pieces of their own.
  const auto g = read_json(kDir / "tokenizer_golden.json");
  const Tokenizer tok(spm_spec(false));
  expect_ids(tok, g["texts"], g["spm_no_dummy_prefix"], /*round_trip=*/true);
}

TEST(Tokenizers, SentencePieceDecodesWhatItEncodes) {
  const Tokenizer tok(spm_spec(true));
  for (const std::string text : {"In the beginning", "naïve 日本 🚀\n\t  x", "  two  spaces"})
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
}

TEST(Tokenizers, Gemma3VocabularyMatchesSentencePiece) {
  // The real Gemma 3 vocabulary (262k pieces) from the Gemma 3 270M GGUF,
  // when scripts/fetch-extra-models.sh has fetched it.
  const auto path = kvscope::model_dir() / "gemma-3-270m-q4_k_m.gguf";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) || !std::filesystem::exists(kDir / "gemma3_tokens.json", ec))
    GTEST_SKIP() << "Gemma 3 270M GGUF absent (scripts/fetch-extra-models.sh fetches it): " << path;
  kvscope::model::LoadOptions o;
  o.weights = "file";
  const auto m = kvscope::model::Model::load(path, o);
  const auto g = read_json(kDir / "gemma3_tokens.json");
  expect_ids(m->tokenizer(), g["texts"], g["ids"], /*round_trip=*/false);
}
