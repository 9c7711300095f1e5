// SPDX-License-Identifier: Apache-2.0
// One calibration file from calibration caches and measured channel weights
// (kvscope/codec/calibration_builder.h), as the CLI and the app build it:
// its sections, and cachegen streams that use it (docs/bitstream.md
// section 4).
#include "kvscope/codec/calibration_builder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec::calibration {
namespace {

const kv::CacheShape kShape{2, 2, 96, 8};  // 16 channels

// A context of "the model" as a prefill with keys before RoPE gives it.
kv::KVCache context_cache(std::uint64_t seed) {
  auto cache = synthetic_cache(kShape, seed);
  cache.info.model_name = "builder-model";
  cache.info.model_sha256 = "ab12";
  cache.info.rope_applied = false;
  return cache;
}

// Key weights rising steeply with the channel (the two dimensions of a RoPE
// pair equal, as the model runtime reports them); values all 1.
std::vector<float> key_weights() {
  std::vector<float> w;
  for (int l = 0; l < kShape.layers; ++l)
    for (int c = 0; c < kShape.channels(); ++c) w.push_back(std::pow(4.0f, float(c % 4)));
  return w;
}
const std::vector<float> kValueWeights(std::size_t(kShape.layers) * kShape.channels(), 1.0f);

// A folder the file is saved to and decoders read from, removed after.
struct Folder {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvscope_builder_" + std::to_string(::getpid()));
  Folder() { std::filesystem::remove_all(dir); }
  ~Folder() { std::filesystem::remove_all(dir); }
};

TEST(CalibrationBuilder, OneFileWithWeightingTablesAndBasesThatCachegenStreamsUse) {
  const std::vector<kv::KVCache> contexts{context_cache(1)};
  const auto weights = key_weights();
  CalibrationSources sources;
  sources.contexts = contexts;
  sources.key_weight = weights;
  sources.value_weight = kValueWeights;
  sources.table_caches = contexts;  // the app's case: the same cache
  const auto built = build_calibration_file(sources);

  // The three sections, for the contexts' model.
  ASSERT_EQ(built.file.sections.size(), 3u);
  ASSERT_NE(built.file.find(kChannelWeightingSection), nullptr);
  ASSERT_NE(built.file.find(kLegacyCachegenSection), nullptr);
  ASSERT_NE(built.file.find(transform::kSectionName), nullptr);
  EXPECT_EQ(built.file.model_name, "builder-model");
  EXPECT_EQ(built.file.model_sha256, "ab12");

  // The weighting section is the CLI's defaults (keys at power 0.5, values
  // unweighted) and reads back as written.
  ASSERT_TRUE(built.weighting);
  const auto direct = build_channel_weighting(contexts, weights, kValueWeights, 0.5, 0.0);
  const auto parsed = parse_channel_weighting(*built.file.find(kChannelWeightingSection), "built");
  EXPECT_EQ(parsed.key_power, 0.5);
  EXPECT_EQ(parsed.value_power, 0.0);
  EXPECT_EQ(parsed.key_weight, weights);
  EXPECT_EQ(parsed.scale, direct.scale);
  EXPECT_EQ(parsed.bins_factor, direct.bins_factor);
  EXPECT_TRUE(parsed.weights_kind(0));
  EXPECT_FALSE(parsed.weights_kind(1));
  // The tables were counted weighted (table version 4, docs/bitstream.md section 4).
  const auto& tables = *built.file.find(kLegacyCachegenSection);
  ASSERT_GE(tables.size(), 2u);
  EXPECT_EQ(tables[0] | tables[1] << 8, 4);

  // Deterministic: the same inputs, the same bytes (the same hash).
  const auto bytes = serialize(built.file);
  EXPECT_EQ(serialize(build_calibration_file(sources).file), bytes);

  // cachegen given the file: a weighted (layout version 5 with the default
  // centroid reconstruction) stream that ships
  // no tables and decodes from the folder the file is in.
  Folder folder;
  const auto path = save(bytes, folder.dir);
  const auto& codec = find_codec("cachegen");
  const auto cache = context_cache(1);
  const auto enc = codec.encode(cache, {{"profile", path.string()}, {"channel_weighting", "calibrated"}});
  const auto info = inspect_stream(enc.bytes);
  EXPECT_EQ(info.codec_version, 5);
  EXPECT_EQ(info.params.at("channel_weighting"), "calibrated");
  for (const auto& s : info.sections) EXPECT_EQ(s.kind, SectionKind::Chunk);
  DecodeOptions o;
  o.profile_dir = folder.dir.string();
  const auto dec = decode(enc.bytes, o);
  EXPECT_EQ(dec.shape(), cache.shape());
  EXPECT_LT(kv::max_abs_difference(dec, cache), 1.0f);
}

// The layer sensitivity kept in the calibration (issue #14: "saved with the
// calibration and drawn in the app"): plans and the app read it from there.
TEST(CalibrationBuilder, KeepsTheLayerSensitivityForPlansAndTheApp) {
  const std::vector<kv::KVCache> contexts{context_cache(3)};
  const LayerSensitivity s = test::example_sensitivity(kShape.layers);
  CalibrationSources sources;
  sources.table_caches = contexts;
  sources.sensitivity = &s;
  const auto built = build_calibration_file(sources);
  ASSERT_NE(built.file.find(kSensitivitySection), nullptr);

  Folder folder;
  const auto path = save(serialize(built.file), folder.dir);
  // load_sensitivity reads it from the calibration, as from a file of its own.
  const auto from_file = load_sensitivity(path);
  EXPECT_EQ(from_file.key_kl, s.key_kl);
  EXPECT_EQ(from_file.value_kl, s.value_kl);
  const auto alone = folder.dir / "alone.kvssens";
  {
    const auto bytes = serialize_sensitivity(s);
    std::ofstream(alone, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  EXPECT_EQ(load_sensitivity(alone).value_kl, s.value_kl);

  // The folder lookup finds it for the model's caches, not for another model.
  ::setenv("KVSCOPE_CALIBRATION_DIR", folder.dir.c_str(), 1);
  const auto found = find_model_sensitivity(contexts[0].info);
  kv::CacheInfo other;
  other.model_name = "another-model";
  const auto not_found = find_model_sensitivity(other);
  ::unsetenv("KVSCOPE_CALIBRATION_DIR");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->key_kl, s.key_kl);
  EXPECT_FALSE(not_found.has_value());

  // A calibration without one is refused naming the file; a sensitivity of
  // another depth than the caches is refused when building.
  sources.sensitivity = nullptr;
  const auto without = save(serialize(build_calibration_file(sources).file), folder.dir / "without");
  try {
    load_sensitivity(without);
    FAIL() << "a calibration without a sensitivity loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
    EXPECT_NE(std::string(e.what()).find(without.string()), std::string::npos) << e.what();
  }
  auto deeper = s;
  deeper.layers = 3;
  deeper.key_kl.push_back(0);
  deeper.value_kl.push_back(0);
  sources.sensitivity = &deeper;
  EXPECT_THROW(build_calibration_file(sources), Error);
}

TEST(CalibrationBuilder, TablesAreCountedAtTheGivenSettingsAndUnweightedWithoutWeights) {
  const std::vector<kv::KVCache> contexts{context_cache(2)};
  CalibrationSources sources;
  sources.contexts = contexts;
  sources.table_caches = contexts;
  CalibrationBuildOptions options;
  options.cachegen = {{"key_bins", "16"}, {"value_bins", "8"}, {"profile", "ignored.kvsprof"}};
  const auto built = build_calibration_file(sources, options);
  EXPECT_FALSE(built.weighting);
  EXPECT_EQ(built.file.find(kChannelWeightingSection), nullptr);
  ASSERT_NE(built.file.find(kLegacyCachegenSection), nullptr);
  ASSERT_NE(built.file.find(transform::kSectionName), nullptr);

  Folder folder;
  const auto path = save(serialize(built.file), folder.dir).string();
  const auto& codec = find_codec("cachegen");
  const auto enc = codec.encode(contexts[0], {{"profile", path}, {"key_bins", "16"}, {"value_bins", "8"}});
  EXPECT_EQ(inspect_stream(enc.bytes).params.count("channel_weighting"), 0u);  // no weighting in the file
  DecodeOptions o;
  o.profile_dir = folder.dir.string();
  EXPECT_NO_THROW(decode(enc.bytes, o));
  // Other bins than the tables were counted at: the stream ships its own
  // tables and decodes without the file.
  const auto other = codec.encode(contexts[0], {{"profile", path}});
  const auto oi = inspect_stream(other.bytes);
  EXPECT_TRUE(std::any_of(oi.sections.begin(), oi.sections.end(),
                          [](const auto& s) { return s.kind == SectionKind::Table; }));
  EXPECT_NO_THROW(decode(other.bytes));
}

TEST(CalibrationBuilder, RefusesNothingToBuildAndWeightsWithoutTheirContexts) {
  EXPECT_THROW(build_calibration_file({}), Error);
  const std::vector<kv::KVCache> caches{context_cache(3)};
  const auto weights = key_weights();
  CalibrationSources sources;
  sources.table_caches = caches;
  sources.key_weight = weights;
  sources.value_weight = kValueWeights;
  try {
    build_calibration_file(sources);
    FAIL() << "weights without contexts accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  }
  // Weights of another shape are the weighting's error.
  sources.contexts = caches;
  sources.key_weight = std::span(weights).first(5);
  EXPECT_THROW(build_calibration_file(sources), Error);
  // Tables alone: the table caches' model names the file.
  CalibrationSources tables_only;
  tables_only.table_caches = caches;
  const auto built = build_calibration_file(tables_only);
  EXPECT_EQ(built.file.sections.size(), 1u);
  EXPECT_EQ(built.file.model_name, "builder-model");
}

}  // namespace
}  // namespace kvscope::codec::calibration
