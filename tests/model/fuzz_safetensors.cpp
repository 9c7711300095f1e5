// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the safetensors header parser (model weights and raw
// caches): any bytes must either parse or throw kvscope::Error.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "kvscope/common/error.h"
#include "kvscope/io/safetensors.h"
#include "tiny_model.h"

kvscope::test::FuzzOutcome kvscope_fuzz_run(std::span<const std::uint8_t> in) {
  return kvscope::test::fuzz_outcome([&] {
    const auto f = kvscope::io::SafetensorsFile::from_bytes(in, "fuzz.safetensors");
    for (const auto& t : f.tensors()) {
      if (t.elements() < 0) std::abort();  // 64-bit dimensions are range-checked
      if (t.elements() <= (1 << 20)) {
        try {
          (void)f.to_float(t);
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
  std::vector<float> x(24, 0.25f);
  std::vector<kvscope::io::SafetensorsWriteTensor> ts = {
      {"a", "F32", {2, 3, 4}, encode_f32(x)},
      {"b", "F16", {24}, encode_f16(x)},
      {"c", "BF16", {4, 6}, encode_bf16(x)},
      {"ids", "I32", {6}, std::vector<std::uint8_t>(24, 1)},
  };
  return {kvscope::io::build_safetensors(ts, {{"format", "pt"}, {"model", "tiny"}})};
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kvscope::test::write_fuzz_seeds(kvscope_fuzz_seeds());
  return 0;
}
