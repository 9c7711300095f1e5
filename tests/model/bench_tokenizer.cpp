// SPDX-License-Identifier: Apache-2.0
// Tokenizer throughput on long texts (counter: bytes_per_second): the
// repository's contexts encoded by a SentencePiece BPE tokenizer (Gemma
// style: the whole text between special tokens is one segment, so merging
// must not be quadratic in its length) and by a Qwen3-style byte-level BPE.
// Vocabularies from tests/model/golden/tokenizers.
//   build/release/tests/model/bench_tokenizer
#include <benchmark/benchmark.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "kvscope/common/paths.h"
#include "kvscope/model/tokenizer.h"

namespace {

const std::filesystem::path kDir =
    std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/model/golden/tokenizers";

std::string corpus(std::size_t bytes) {
  std::string all;
  for (const char* name : {"kjv-genesis.txt", "apache-2.0.txt", "gpl-3.0.txt", "python-textwrap-code.txt"})
    all += kvscope::read_file(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "datasets/contexts" / name);
  std::string out;
  while (out.size() < bytes) out += all;
  out.resize(bytes);
  return out;
}

kvscope::model::Tokenizer spm() {
  const auto j = nlohmann::json::parse(std::ifstream(kDir / "spm_bpe.json"));
  kvscope::model::TokenizerSpec s;
  s.kind = kvscope::model::TokenizerSpec::Kind::SentencePieceBpe;
  s.tokens = j["tokens"].get<std::vector<std::string>>();
  s.scores = j["scores"].get<std::vector<float>>();
  s.token_types = j["types"].get<std::vector<std::int32_t>>();
  s.unk_id = j["unk_id"];
  s.add_space_prefix = false;
  return kvscope::model::Tokenizer(std::move(s));
}

void run(benchmark::State& state, const kvscope::model::Tokenizer& tok) {
  const std::string text = corpus(static_cast<std::size_t>(state.range(0)));
  std::size_t tokens = 0;
  for (auto _ : state) tokens = tok.encode(text).size();
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  state.counters["tokens"] = static_cast<double>(tokens);
}

void BM_SentencePieceOneSegment(benchmark::State& state) {
  static const auto tok = spm();
  run(state, tok);
}

void BM_ByteLevelBpe(benchmark::State& state) {
  static const kvscope::model::Tokenizer tok(
      kvscope::model::tokenizer_spec_from_hf(kDir / "qwen3_tokenizer.json"));
  run(state, tok);
}

BENCHMARK(BM_SentencePieceOneSegment)->Arg(16 << 10)->Arg(256 << 10)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ByteLevelBpe)->Arg(256 << 10)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
