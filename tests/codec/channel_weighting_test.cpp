// SPDX-License-Identifier: Apache-2.0
// cachegen's calibrated channel weighting (docs/bitstream.md, "cachegen
// channel weighting"): the calibration section, the version 4 streams it
// makes, and their checks.
#include "kvscope/codec/channel_weighting.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/pipeline_trace.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

const Codec& cachegen() {
  return find_codec("cachegen");
}

const kv::CacheShape kShape{2, 2, 96, 8};  // 16 channels

// Key weights that rise steeply with the channel (pairs (d, d + 4) equal, as
// the model runtime reports them); values unweighted.
std::vector<float> rising_key_weights() {
  std::vector<float> w;
  for (int l = 0; l < kShape.layers; ++l)
    for (int c = 0; c < kShape.channels(); ++c) w.push_back(std::pow(4.0f, float(c % 4)));
  return w;
}

calibration::ChannelWeighting make_weighting(const kv::KVCache& cache) {
  const std::vector<float> ones(rising_key_weights().size(), 1.0f);
  return calibration::build_channel_weighting(std::vector<kv::KVCache>{cache}, rising_key_weights(), ones,
                                              0.5, 0.0);
}

// A calibration folder for one test, set as the encoders' default and
// removed after.
struct CalibrationFolder {
  std::filesystem::path dir;
  explicit CalibrationFolder(const std::string& name)
      : dir(std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(dir);
    ::setenv("KVSCOPE_CALIBRATION_DIR", dir.c_str(), 1);
  }
  ~CalibrationFolder() {
    ::unsetenv("KVSCOPE_CALIBRATION_DIR");
    std::filesystem::remove_all(dir);
  }
  // Saves a calibration for `cache`'s model holding the weighting (and, when
  // asked, tables counted with it).
  std::filesystem::path save(const kv::KVCache& cache, const calibration::ChannelWeighting& w, bool tables) {
    calibration::CalibrationFile file;
    if (tables)
      file = calibration::parse(
          calibration::build_profile(std::vector<kv::KVCache>{cache}, {{"profile", ""}}, {}, &w), "tables");
    file.model_name = cache.info.model_name;
    file.sections[calibration::kChannelWeightingSection] = calibration::serialize_channel_weighting(w);
    return calibration::save(calibration::serialize(file), dir);
  }
};

kv::KVCache model_cache(std::uint64_t seed) {
  auto cache = synthetic_cache(kShape, seed);
  cache.info.model_name = "weighted-model";
  return cache;
}

TEST(ChannelWeighting, HeavierChannelsGetSmallerScalesAroundOne) {
  const auto w = make_weighting(model_cache(1));
  const int C = kShape.channels();
  for (int l = 0; l < kShape.layers; ++l) {
    const std::uint16_t* keys = w.scale.data() + std::size_t(l) * 2 * C;
    const std::uint16_t* values = keys + C;
    double log_sum = 0;
    for (int c = 0; c < C; ++c) {
      log_sum += std::log(half_to_float(keys[c]));
      EXPECT_EQ(half_to_float(values[c]), 1.0f);  // value power 0
    }
    EXPECT_NEAR(log_sum / C, 0.0, 0.01);  // gains around their geometric mean
    // Weights 4x apart at power 0.5: gains (4)^(0.5 / 2) = sqrt(2) apart.
    EXPECT_NEAR(half_to_float(keys[1]) / half_to_float(keys[0]), 1 / std::sqrt(2.0f), 0.002f);
    EXPECT_GT(w.bins_factor[std::size_t(l) * 2], 0.0f);
    EXPECT_EQ(w.bins_factor[std::size_t(l) * 2 + 1], 1.0f);
  }
}

TEST(ChannelWeighting, SectionRoundTripsAndRejectsDamage) {
  const auto w = make_weighting(model_cache(2));
  const auto bytes = calibration::serialize_channel_weighting(w);
  const auto back = calibration::parse_channel_weighting(bytes, "test");
  EXPECT_EQ(back.scale, w.scale);
  EXPECT_EQ(back.bins_factor, w.bins_factor);
  EXPECT_EQ(back.key_weight, w.key_weight);
  for (std::size_t n = 0; n < bytes.size(); n += 5)
    EXPECT_THROW(calibration::parse_channel_weighting({bytes.data(), n}, "test"), Error) << n;
  auto zero_scale = w;
  zero_scale.scale[3] = 0;
  EXPECT_THROW(
      calibration::parse_channel_weighting(calibration::serialize_channel_weighting(zero_scale), "t"), Error);
  auto longer = bytes;
  longer.push_back(0);
  try {
    calibration::parse_channel_weighting(longer, "my.kvsprof");
    FAIL() << "trailing byte accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
    EXPECT_NE(std::string(e.what()).find("my.kvsprof"), std::string::npos) << e.what();
  }
  EXPECT_THROW(
      calibration::build_channel_weighting(std::vector<kv::KVCache>{model_cache(2)},
                                           std::vector<float>(3, 1.0f), std::vector<float>(3, 1.0f), 0.5, 0),
      Error);
}

// With the model's calibration holding a weighting, the default encode
// writes layout version 4: the header names it and lists the scaled key
// bins, the decoder undoes the scales, heavy key channels come back closer
// than unweighted coding brings them and light ones less close.
TEST(ChannelWeighting, CalibratedStreamsAreVersion4AndMoveErrorToLightChannels) {
  CalibrationFolder folder("kvscope_weighting");
  const auto cache = model_cache(3);
  const auto w = make_weighting(cache);
  folder.save(cache, w, false);
  // Midpoint reconstruction keeps the versions 4 and 3 (5 is tested in reconstruction_test.cpp).
  const ParamSet params = {{"profile", ""}, {"sinks", "1"}, {"reconstruction", "0"}};
  const auto weighted = cachegen().encode(cache, params);
  ParamSet off_params = params;
  off_params["channel_weighting"] = "off";
  const auto off = cachegen().encode(cache, off_params);
  const auto wi = inspect_stream(weighted.bytes);
  const auto oi = inspect_stream(off.bytes);
  EXPECT_EQ(wi.codec_version, 4);
  EXPECT_EQ(oi.codec_version, 3);
  EXPECT_EQ(wi.params.at("channel_weighting"), "calibrated");
  EXPECT_EQ(oi.params.count("channel_weighting"), 0u);
  EXPECT_EQ(wi.params.count("rounding"), 0u);
  EXPECT_NE(wi.params.at("key_bins"), oi.params.at("key_bins"));
  EXPECT_EQ(wi.params.at("value_bins"), oi.params.at("value_bins"));

  const auto dw = decode(weighted.bytes), doff = decode(off.bytes);
  const int C = kShape.channels();
  for (int l = 0; l < kShape.layers; ++l) {
    double heavy[2] = {0, 0}, light[2] = {0, 0};  // squared error, weighted / off
    for (int t = 1; t < kShape.tokens; ++t)
      for (int c = 0; c < C; ++c) {
        const float x = cache.channel_value(l, kv::Kind::Key, t, c);
        const double ew = std::pow(dw.channel_value(l, kv::Kind::Key, t, c) - x, 2);
        const double eo = std::pow(doff.channel_value(l, kv::Kind::Key, t, c) - x, 2);
        (c % 4 == 3 ? heavy : c % 4 == 0 ? light : heavy)[0] += c % 4 == 3 || c % 4 == 0 ? ew : 0;
        (c % 4 == 3 ? heavy : c % 4 == 0 ? light : heavy)[1] += c % 4 == 3 || c % 4 == 0 ? eo : 0;
      }
    EXPECT_LT(heavy[0], heavy[1]) << "layer " << l;
    EXPECT_GT(light[0], light[1]) << "layer " << l;
    // Sinks stay exact.
    for (int c = 0; c < C; ++c)
      EXPECT_EQ(dw.channel_value(l, kv::Kind::Key, 0, c),
                half_to_float(float_to_half(cache.channel_value(l, kv::Kind::Key, 0, c))));
  }
}

// Regression: a weighted stream whose other parameters are all version 2's
// (sinks=0, post-RoPE keys, f16 steps, 16-bit tables) was written without
// the version 3 parameters, and decoders refuse a version 3 or 4 stream
// without them ("layout version 3 stream without parameter 'sinks'").
TEST(ChannelWeighting, RegressionWeightedStreamWithVersion2ParametersDidNotDecode) {
  CalibrationFolder folder("kvscope_weighting_v2");
  const auto cache = model_cache(6);
  folder.save(cache, make_weighting(cache), false);
  const ParamSet v2 = {{"sinks", "0"},        {"delta_mode", "integer"},  {"step_coding", "fp16"},
                       {"table_bits", "16"},  {"key_space", "post_rope"}, {"profile", ""},
                       {"key_bins", "16,24"}, {"value_bins", "16,10"},    {"reconstruction", "0"}};
  const auto enc = cachegen().encode(cache, v2);
  const auto info = inspect_stream(enc.bytes);
  EXPECT_EQ(info.codec_version, 4);
  EXPECT_EQ(info.params.at("sinks"), "0");
  const auto dec = decode(enc.bytes);
  EXPECT_EQ(dec.shape().elements(), cache.shape().elements());
}

// The pipeline view's trace follows the weighting: it says so, gives each
// element its channel's scale, and its reconstruction times that scale is
// exactly what the decoder returns.
TEST(ChannelWeighting, PipelineTraceShowsTheChannelScales) {
  CalibrationFolder folder("kvscope_weighting_trace");
  const auto cache = model_cache(7);
  const auto w = make_weighting(cache);
  folder.save(cache, w, false);
  const ParamSet params = {{"profile", ""}, {"sinks", "1"}, {"key_space", "post_rope"}};
  const auto dec = decode(cachegen().encode(cache, params).bytes);
  const int C = kShape.channels();
  const auto tr = trace_pipeline(cache, params, 1, kv::Kind::Key, 5, 0, C);
  EXPECT_TRUE(tr.weighted);
  ASSERT_EQ(int(tr.elements.size()), C);
  for (const auto& e : tr.elements) {
    EXPECT_EQ(e.channel_scale, half_to_float(w.scale[(std::size_t(1) * 2) * C + e.channel]));
    EXPECT_EQ(e.reconstructed * e.channel_scale, dec.channel_value(1, kv::Kind::Key, 5, e.channel))
        << e.channel;
  }
  EXPECT_FALSE(trace_pipeline(cache, params, 1, kv::Kind::Value, 5, 0, C).weighted);  // values: power 0
}

// Tables calibrated with the weighting fit the weighted streams (none ship),
// and decoders need nothing but the calibration folder the tables need.
TEST(ChannelWeighting, TablesCountedWithTheWeightingFitWeightedStreams) {
  CalibrationFolder folder("kvscope_weighting_tables");
  const auto cache = model_cache(4);
  folder.save(cache, make_weighting(cache), true);
  // Midpoints: centroid levels come from the tables, which differ between the two streams.
  const auto enc = cachegen().encode(cache, {{"profile", "auto"}, {"sinks", "1"}, {"reconstruction", "0"}});
  const auto info = inspect_stream(enc.bytes);
  EXPECT_EQ(info.codec_version, 4);
  for (const auto& s : info.sections) EXPECT_EQ(s.kind, SectionKind::Chunk);
  const auto shipped = cachegen().encode(cache, {{"profile", ""}, {"sinks", "1"}, {"reconstruction", "0"}});
  EXPECT_EQ(test::hash_values(decode(enc.bytes).data()), test::hash_values(decode(shipped.bytes).data()));
}

// Version 4 streams under truncation and tampering (CRCs resealed): an
// Error, never a crash; a version 3 stream claiming channel_weighting and a
// version 4 one without it are refused.
TEST(ChannelWeighting, CorruptVersion4StreamsAreErrors) {
  CalibrationFolder folder("kvscope_weighting_corrupt");
  const auto cache = model_cache(5);
  folder.save(cache, make_weighting(cache), false);
  const auto valid =
      cachegen().encode(cache, {{"profile", ""}, {"chunk_tokens", "32"}, {"reconstruction", "0"}}).bytes;
  ASSERT_EQ(inspect_stream(valid).codec_version, 4);
  DecodeOptions o;
  o.max_elements = 1 << 20;
  o.threads = 1;
  for (const auto& m : test::mutations(valid, 400, 23)) {
    try {
      const auto d = decode(m, o);
      EXPECT_EQ(d.shape().elements(), cache.shape().elements());
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace kvscope::codec
