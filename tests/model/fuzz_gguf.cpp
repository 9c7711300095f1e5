// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the GGUF reader: any bytes must either parse or throw
// kvscope::Error; never crash, hang or read out of bounds.
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "kvscope/common/error.h"
#include "kvscope/io/gguf.h"
#include "tiny_model.h"

kvscope::test::FuzzOutcome kvscope_fuzz_run(std::span<const std::uint8_t> in) {
  return kvscope::test::fuzz_outcome([&] {
    const auto f = kvscope::io::GgufFile::from_bytes(in, "fuzz.gguf");
    for (const auto& [key, value] : f.metadata()) {
      (void)f.get_float(key == "general.alignment" ? key : "x");
      (void)value;
    }
    for (const auto& t : f.tensors()) {
      if (t.elements <= (1u << 20)) {
        try {
          (void)f.dequantize(t);
        } catch (const kvscope::Error&) {
        }
      }
    }
  });
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvscope_fuzz_run({data, size});
  return 0;
}

std::vector<std::vector<std::uint8_t>> kvscope_fuzz_seeds() {
  using namespace kvscope::test;
  std::vector<float> x(64);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.1f - 3.f;
  std::vector<std::vector<std::uint8_t>> seeds;
  seeds.push_back(build_gguf({{"general.architecture", 8, std::string("llama")},
                              {"general.alignment", 4, std::uint64_t(32)},
                              {"n", 4, std::uint64_t(3)},
                              {"f", 6, 1.5},
                              {"b", 7, true},
                              {"s", 9, std::vector<std::string>{"a", "bc"}},
                              {"i", 9, std::vector<std::int32_t>{1, -1}},
                              {"r", 9, std::vector<float>{0.5f}}},
                             {{"f32", {64}, 0, encode_f32(x)},
                              {"f16", {32, 2}, 1, encode_f16(x)},
                              {"bf16", {64}, 30, encode_bf16(x)},
                              {"q8", {64}, 8, encode_q8_0(x)},
                              {"q40", {64}, 2, encode_q4_0(x)},
                              {"q41", {32, 2}, 3, encode_q4_1(x)}}));
  // K-quant super-blocks (256 values) and a quantized tiny model.
  std::vector<float> y(512);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 97) * 0.01f - 0.4f;
  seeds.push_back(build_gguf({{"general.architecture", 8, std::string("llama")}},
                             {{"q4k", {256, 2}, 12, encode_q4_k(y)},
                              {"q6k", {256, 2}, 14, encode_q6_k(y)},
                              {"q50", {32, 16}, 6, std::vector<std::uint8_t>(16 * 22, 0x5A)},
                              {"q51", {32, 16}, 7, std::vector<std::uint8_t>(16 * 24, 0x3C)},
                              {"q2k", {256, 2}, 10, std::vector<std::uint8_t>(2 * 84, 0x11)},
                              {"q3k", {256, 2}, 11, std::vector<std::uint8_t>(2 * 110, 0x22)},
                              {"q5k", {256, 2}, 13, std::vector<std::uint8_t>(2 * 176, 0x33)},
                              {"q8k", {256, 2}, 15, std::vector<std::uint8_t>(2 * 292, 0x00)},
                              {"iq4nl", {32, 16}, 20, std::vector<std::uint8_t>(16 * 18, 0x44)},
                              {"iq4xs", {256, 2}, 23, std::vector<std::uint8_t>(2 * 136, 0x55)}}));
  TinyDims d;
  d.layers = 1;
  d.hidden = 32;
  d.heads = 2;
  d.kv_heads = 1;
  d.intermediate = 32;
  seeds.push_back(tiny_gguf_bytes(TinyWeights(d), 8));
  return seeds;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kvscope::test::write_fuzz_seeds(kvscope_fuzz_seeds());
  return 0;
}
