// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the bitstream decoder: any input must decode or throw
// kvscope::Error, never crash, hang or read out of bounds, and no input may
// make the decoder allocate more than its cap allows (the run's
// -malloc_limit_mb catches one that tries). A stream that decodes must decode
// chunk by chunk (decode_section) to the same values. fuzz_replay_test.cpp
// runs it over deterministic mutations under ctest with time and memory
// bounds; the `fuzz` ctest label runs it under libFuzzer (tests/fuzz).
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/error.h"

namespace kvscope::test {

/// The decoder's cap in this target: 2^22 values (16 MiB of float32).
inline constexpr std::size_t kFuzzDecodeMaxElements = std::size_t(1) << 22;

FuzzOutcome fuzz_decode_run(std::span<const std::uint8_t> in) {
  codec::DecodeOptions o;
  o.threads = 1;
  o.max_elements = kFuzzDecodeMaxElements;
  o.profile_dir = "/nonexistent-kvscope-profiles";
  return fuzz_outcome([&] {
    const kv::KVCache cache = codec::decode(in, o);
    const auto info = codec::inspect_stream(in, false);
    for (std::size_t i = 0, checked = 0; i < info.sections.size() && checked < 4; ++i) {
      const auto& s = info.sections[i];
      if (s.kind != codec::SectionKind::Chunk) continue;
      ++checked;
      const auto chunk = codec::decode_section(in, i, o);
      std::size_t j = 0;
      for (int h = 0; h < chunk.kv_heads; ++h)
        for (int t = 0; t < chunk.token_count; ++t)
          for (int d = 0; d < chunk.head_dim; ++d, ++j) {
            const float a = chunk.values[j], b = cache.at(s.layer, s.kv, h, s.token_begin + t, d);
            if (std::memcmp(&a, &b, 4) != 0) std::abort();  // a chunk decodes differently alone
          }
    }
  });
}

/// A stream encoded with a channel weighting: cachegen layout version 4 or 5
/// (tables shipped) or transform layout version 2 (basis shipped), so
/// decoding needs no calibration. The weighting comes from a calibration in
/// a temporary folder, made the encoder's for this call only (cachegen finds
/// it there; transform is given its path).
std::vector<std::uint8_t> weighted_stream(const kv::KVCache& cache, const std::string& codec,
                                          codec::ParamSet params) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope_fuzz_weighting_" + std::to_string(::getpid()));
  const std::size_t n = std::size_t(cache.shape().layers) * std::size_t(cache.shape().channels());
  std::vector<float> key(n), value(n, 1.0f);
  for (std::size_t i = 0; i < n; ++i) key[i] = float(1 + i % 5);
  codec::calibration::CalibrationFile file;
  file.model_name = cache.info.model_name;
  file.sections[codec::calibration::kChannelWeightingSection] =
      codec::calibration::serialize_channel_weighting(
          codec::calibration::build_channel_weighting(std::vector<kv::KVCache>{cache}, key, value, 0.5, 0.0));
  const auto path = codec::calibration::save(codec::calibration::serialize(file), dir);
  const char* before = std::getenv("KVSCOPE_CALIBRATION_DIR");
  const std::string saved = before ? before : "";
  ::setenv("KVSCOPE_CALIBRATION_DIR", dir.c_str(), 1);
  if (codec == "transform") params["calibration"] = path.string();
  auto bytes = codec::find_codec(codec).encode(cache, params).bytes;
  if (before)
    ::setenv("KVSCOPE_CALIBRATION_DIR", saved.c_str(), 1);
  else
    ::unsetenv("KVSCOPE_CALIBRATION_DIR");
  std::filesystem::remove_all(dir);
  return bytes;
}

/// Valid streams of every codec (small caches, several chunks): the seeds.
std::vector<std::vector<std::uint8_t>> fuzz_decode_seeds() {
  std::vector<std::vector<std::uint8_t>> seeds;
  const auto cache = codec::synthetic_cache({2, 2, 19, 8}, 77);
  // The same cache with the extended cache info (container flag bit 0):
  // RoPE tables and attention windows after the section count.
  auto extended = cache;
  extended.info.rope_inv_freq.assign(2, std::vector<double>{1.0, 0.1, 0.01, 0.001});
  extended.info.layer_window = {0, 16};
  for (const codec::Codec* c : codec::all_codecs()) {
    seeds.push_back(c->encode(cache, {{"chunk_tokens", "8"}}).bytes);
    if (c->name() == "cachegen")
      for (const char* scale : {"head", "channel"})
        seeds.push_back(
            c->encode(extended, {{"chunk_tokens", "8"}, {"scale", scale}, {"delta", "always"}}).bytes);
  }
  // Weighted: cachegen layout version 4 (bin midpoints) and 5 (centroid
  // levels), transform layout version 2 (a step scale per component) and 3
  // (also value token gains, as transform's default seed above has).
  for (const char* reconstruction : {"0", "0.75"})
    seeds.push_back(weighted_stream(
        extended, "cachegen", {{"chunk_tokens", "8"}, {"profile", ""}, {"reconstruction", reconstruction}}));
  for (const char* gain : {"0", "1"})
    seeds.push_back(weighted_stream(extended, "transform",
                                    {{"chunk_tokens", "8"},
                                     {"basis", "cache"},
                                     {"bits", "6"},
                                     {"value_weighting", "1"},
                                     {"value_gain", gain}}));
  // transform layout version 1: no weighting, no gains.
  seeds.push_back(
      codec::find_codec("transform").encode(cache, {{"chunk_tokens", "8"}, {"value_gain", "0"}}).bytes);
  return seeds;
}

}  // namespace kvscope::test

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kvscope::test::write_fuzz_seeds(kvscope::test::fuzz_decode_seeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvscope::test::fuzz_decode_run({data, size});
  return 0;
}
