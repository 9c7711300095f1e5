// SPDX-License-Identifier: Apache-2.0
// The `transform` codec's query weighting (layout version 2): channels the
// queries read strongly decode closer at the same budget, the stream carries
// a step scale per component and says it was weighted, unweighted streams
// stay version 1 (also where no channel weights are at hand), and weights of
// another shape are refused with the file named.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/common/error.h"
#include "tamper_test_util.h"
#include "test_util.h"
#include "transform_test_calibration.h"

namespace kvscope::codec {
namespace {

constexpr kv::CacheShape kShape{2, 2, 160, 8};

kv::KVCache pre_rope(std::uint64_t seed) {
  auto c = synthetic_cache(kShape, seed);
  c.info.rope_applied = false;
  return c;
}

// Key channel weights: channels 0..3 of every layer read 50x as strongly.
std::vector<float> key_weights() {
  std::vector<float> w;
  for (int l = 0; l < kShape.layers; ++l)
    for (int c = 0; c < kShape.channels(); ++c) w.push_back(c < 4 ? 50.0f : 1.0f);
  return w;
}

// A calibration file with transform bases and, when asked, channel weights.
struct WeightedCalibration : test::TempTransformCalibration {
  using Sections = std::map<std::string, std::vector<std::uint8_t>>;
  WeightedCalibration(const kv::KVCache& cache, const std::string& name, bool with_weights)
      : TempTransformCalibration(cache, "weighting-" + name, with_weights ? weights_of(cache) : Sections{}) {}

 private:
  static Sections weights_of(const kv::KVCache& cache) {
    const std::vector<float> values(key_weights().size(), 1.0f);
    return {{calibration::kChannelWeightingSection,
             calibration::serialize_channel_weighting(calibration::build_channel_weighting(
                 std::vector<kv::KVCache>{cache}, key_weights(), values, 0.5, 0.0))}};
  }
};

// Sum over key elements of (channel weight) x (error)^2: what the queries see.
double weighted_key_error(const kv::KVCache& a, const kv::KVCache& b) {
  const auto w = key_weights();
  double e = 0;
  for (int l = 0; l < kShape.layers; ++l)
    for (int h = 0; h < kShape.kv_heads; ++h)
      for (int t = 0; t < kShape.tokens; ++t)
        for (int d = 0; d < kShape.head_dim; ++d) {
          const double diff = a.at(l, kv::Kind::Key, h, t, d) - b.at(l, kv::Kind::Key, h, t, d);
          e += w[std::size_t(l) * kShape.channels() + h * kShape.head_dim + d] * diff * diff;
        }
  return e;
}

TEST(TransformWeighting, StronglyReadChannelsDecodeCloserAtTheSameBudget) {
  const auto cache = pre_rope(41);
  WeightedCalibration cal(pre_rope(40), "closer", true);
  DecodeOptions o;
  o.profile_dir = cal.dir.string();
  auto encode = [&](const std::string& power) {
    return find_codec("transform")
        .encode(cache, {{"calibration", cal.file.string()},
                        {"bits", "2"},
                        {"key_weighting", power},
                        {"chunk_tokens", "64"},
                        {"value_gain", "0"}});
  };
  const auto plain = encode("0"), weighted = encode("1");
  const auto plain_info = inspect_stream(plain.bytes), weighted_info = inspect_stream(weighted.bytes);
  EXPECT_EQ(plain_info.codec_version, 1);
  EXPECT_EQ(weighted_info.codec_version, 2);
  // Both meet the budget (a step scale per component is counted in it).
  EXPECT_LE(8.0 * double(weighted.bytes.size()) / double(kShape.elements()), 2.0 * 1.01);
  EXPECT_LE(8.0 * double(plain.bytes.size()) / double(kShape.elements()), 2.0 * 1.01);
  const double e_plain = weighted_key_error(cache, decode(plain.bytes, o));
  const double e_weighted = weighted_key_error(cache, decode(weighted.bytes, o));
  // 13% lower on this cache: its components spread over all channels, so a
  // per-component step can favour the heavy channels only so far.
  EXPECT_LT(e_weighted, 0.93 * e_plain) << "plain " << e_plain << ", weighted " << e_weighted;
  // What each stream says it did.
  EXPECT_EQ(stream_params(weighted_info).at("key_weighting"), "1");
  EXPECT_EQ(stream_params(plain_info).at("key_weighting"), "0");
  EXPECT_EQ(plain_info.params.count("key_weighting"), 0u) << "version 1 headers keep their parameters";
}

TEST(TransformWeighting, ShippedBasisTakesTheCalibrationsWeightsAndDecodesWithoutIt) {
  const auto cache = pre_rope(43);
  std::vector<std::uint8_t> bytes;
  {
    WeightedCalibration cal(pre_rope(42), "shipped", true);
    bytes = find_codec("transform")
                .encode(cache, {{"basis", "cache"},
                                {"calibration", cal.file.string()},
                                {"bits", "3"},
                                {"key_weighting", "1"},
                                {"value_weighting", "0.5"},
                                {"value_gain", "0"}})
                .bytes;
  }
  EXPECT_EQ(inspect_stream(bytes).codec_version, 2);
  // The scales travel in the stream: no calibration is needed to decode.
  const auto d = decode(bytes);
  double sq = 0, ref = 0;
  for (std::size_t i = 0; i < cache.data().size(); ++i) {
    sq += std::pow(double(d.data()[i]) - cache.data()[i], 2);
    ref += std::pow(double(cache.data()[i]), 2);
  }
  EXPECT_LT(sq, 0.05 * ref);
}

TEST(TransformWeighting, DefaultWeightsKeysWhereTheCalibrationHasChannelWeights) {
  const auto cache = pre_rope(45);
  WeightedCalibration with(pre_rope(44), "with", true), without(pre_rope(44), "without", false);
  // (value_gain=0: without token gains the weighting alone sets the version)
  const auto weighted =
      inspect_stream(find_codec("transform")
                         .encode(cache, {{"calibration", with.file.string()}, {"value_gain", "0"}})
                         .bytes);
  EXPECT_EQ(weighted.codec_version, 2);
  EXPECT_EQ(stream_params(weighted).at("key_weighting"), "1");
  EXPECT_EQ(stream_params(weighted).at("value_weighting"), "0");
  // No channel weights (a file made without the model, or no file): the
  // stream is unweighted, even when weighting is asked for, and says so.
  for (const ParamSet& params :
       {ParamSet{{"calibration", without.file.string()}, {"value_gain", "0"}},
        ParamSet{{"calibration", without.file.string()}, {"key_weighting", "1.5"}, {"value_gain", "0"}},
        ParamSet{{"basis", "cache"}, {"value_weighting", "1"}, {"value_gain", "0"}}}) {
    const auto info = inspect_stream(find_codec("transform").encode(cache, params).bytes);
    EXPECT_EQ(info.codec_version, 1);
    EXPECT_EQ(stream_params(info).at("key_weighting"), "0");
    EXPECT_EQ(stream_params(info).at("value_weighting"), "0");
  }
}

// Regression: calibrations are remembered by path, size and modification
// time so an encode reads its file once; one rewritten in place must be read
// again, not served from memory.
TEST(TransformWeighting, ACalibrationRewrittenInPlaceIsReadAgain) {
  const auto cache = pre_rope(49);
  WeightedCalibration without(pre_rope(48), "rewrite-without", false),
      with(pre_rope(48), "rewrite-with", true);
  const auto file = without.dir / "model.kvsprof";
  auto encode_version = [&] {
    return inspect_stream(find_codec("transform")
                              .encode(cache, {{"calibration", file.string()}, {"value_gain", "0"}})
                              .bytes)
        .codec_version;
  };
  std::filesystem::copy_file(without.file, file);
  EXPECT_EQ(encode_version(), 1);
  EXPECT_EQ(encode_version(), 1);
  std::filesystem::copy_file(with.file, file, std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(encode_version(), 2);
}

TEST(TransformWeighting, WeightsOfAnotherShapeAreRefusedNamingTheFile) {
  WeightedCalibration cal(pre_rope(44), "shape", true);
  auto other = synthetic_cache({3, 2, 40, 8}, 6);
  other.info.rope_applied = false;
  try {
    find_codec("transform").encode(other, {{"basis", "cache"}, {"calibration", cal.file.string()}});
    FAIL() << "weighted with the channel weights of another shape";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find(cal.file.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("channel weighting"), std::string::npos) << e.what();
  }
}

TEST(TransformWeighting, TamperedStepScaleIsAFormatError) {
  const auto cache = pre_rope(47);
  WeightedCalibration cal(pre_rope(46), "tamper", true);
  DecodeOptions o;
  o.profile_dir = cal.dir.string();
  const auto bytes =
      find_codec("transform")
          .encode(cache, {{"calibration", cal.file.string()}, {"key_weighting", "1"}, {"sink_tokens", "0"}})
          .bytes;
  ASSERT_NO_THROW(decode(bytes, o));
  // The first chunk's first component entry (no exact tokens): varint m,
  // f32 step, varint gap, varint zc, u8 K, u16 rho, then the u16 scale.
  const auto& sec = inspect_stream(bytes).sections.at(0);
  test::ByteCursor at{bytes, sec.payload_offset};
  at.varint();
  at.skip(4);
  at.varint();
  at.varint();
  at.skip(3);
  test::expect_invalid_f16_refused(bytes, at.at, "step scale", o);
}

}  // namespace
}  // namespace kvscope::codec
