// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for calibration files (docs/bitstream.md section 4): any
// input must parse or throw kvscope::Error, never crash, hang or read out of
// bounds, and every section this build knows (cachegen tables, channel
// weighting, layer sensitivity, transform bases) is parsed too.
// fuzz_calibration_replay_test.cpp runs it over mutations under ctest; the
// `fuzz` ctest label runs it under libFuzzer (tests/fuzz).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "cachegen_internal.h"
#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/codec/transform_basis.h"
#include "test_util.h"

namespace kvscope::test {

FuzzOutcome fuzz_calibration_run(std::span<const std::uint8_t> in) {
  return fuzz_outcome([&] {
    const auto file = codec::calibration::parse(in, "fuzz.kvsprof");
    if (file.find(codec::calibration::kLegacyCachegenSection))
      codec::detail::cachegen::parse_profile(in, "fuzz.kvsprof");
    if (const auto* s = file.find(codec::calibration::kChannelWeightingSection))
      codec::calibration::parse_channel_weighting(*s, "fuzz.kvsprof");
    if (const auto* s = file.find(codec::kSensitivitySection)) codec::parse_sensitivity(*s, "fuzz.kvsprof");
    if (const auto* s = file.find(codec::transform::kSectionName))
      codec::transform::parse_calibration(*s, "fuzz.kvsprof");
  });
}

/// Valid calibration files: cachegen tables (table versions 3 and 4, the
/// second counted with a channel weighting) with the weighting, a layer
/// sensitivity and transform bases as further sections.
std::vector<std::vector<std::uint8_t>> fuzz_calibration_seeds() {
  const kv::CacheShape shape{2, 2, 24, 8};
  const std::vector<kv::KVCache> caches = {codec::synthetic_cache(shape, 5),
                                           codec::synthetic_cache(shape, 6)};
  const std::size_t n = std::size_t(shape.layers) * std::size_t(shape.channels());
  std::vector<float> key(n), value(n, 1.0f);
  for (std::size_t i = 0; i < n; ++i) key[i] = float(1 + i % 7);
  const auto weighting = codec::calibration::build_channel_weighting(caches, key, value, 0.5, 0.0);
  const auto sens = codec::test::example_sensitivity(shape.layers);
  auto bases = caches;
  for (auto& c : bases) c.info.rope_applied = false;
  std::vector<std::vector<std::uint8_t>> seeds;
  for (const bool weighted : {false, true}) {
    auto file = codec::calibration::parse(
        codec::calibration::build_profile(caches, {{"profile", ""}, {"chunk_tokens", "16"}}, {},
                                          weighted ? &weighting : nullptr),
        "seed");
    if (weighted) {
      file.sections[codec::calibration::kChannelWeightingSection] =
          codec::calibration::serialize_channel_weighting(weighting);
      file.sections[codec::kSensitivitySection] = codec::serialize_sensitivity(sens);
      codec::transform::BuildOptions bo;
      bo.threads = 1;
      file.sections[codec::transform::kSectionName] =
          codec::transform::serialize_calibration(codec::transform::build_calibration(bases, bo));
    }
    seeds.push_back(codec::calibration::serialize(file));
  }
  return seeds;
}

}  // namespace kvscope::test

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kvscope::test::write_fuzz_seeds(kvscope::test::fuzz_calibration_seeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvscope::test::fuzz_calibration_run({data, size});
  return 0;
}
