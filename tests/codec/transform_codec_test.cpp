// SPDX-License-Identifier: Apache-2.0
// The `transform` codec: its symbol model, round trips within the error
// bound its quantizer implies, exact sink/recent tokens, the bit budget,
// determinism, and the errors a user meets without a calibration.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/codec/transform_plan.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "test_util.h"
#include "transform_model.h"
#include "transform_test_calibration.h"

namespace kvscope::codec {
namespace {

namespace dt = detail::transform;

TEST(TransformModel, EveryModelIsAValidCdf) {
  for (int classes = 0; classes <= dt::kMaxClasses; ++classes)
    for (int rho : {0, 1, 100, 30000, 60000, 65535}) {
      const auto m = dt::geometric_model(std::uint16_t(rho), classes);
      ASSERT_EQ(m.size(), dt::alphabet(classes));
      EXPECT_EQ(m.cdf.back(), 65536u);
      for (int s = 0; s < m.size(); ++s) EXPECT_GE(m.freq(s), 1u) << rho << " " << classes << " " << s;
    }
}

TEST(TransformModel, SmallerRhoPutsMoreMassOnZero) {
  EXPECT_GT(dt::geometric_model(1000, 8).freq(0), dt::geometric_model(50000, 8).freq(0));
  // Magnitudes fall off: class 0 (|d| = 1) is likelier than class 5.
  const auto m = dt::geometric_model(40000, 8);
  EXPECT_GT(m.freq(1), m.freq(11));
}

TEST(TransformModel, OffsetsRoundTripThroughTheRangeCoder) {
  std::vector<int> values = {0, 1, -1, 2, -2, 3, -3, 4, 7, -8, 1000, -1000, 32767, -32768, 65535, -65535};
  for (int v = -300; v <= 300; v += 7) values.push_back(v);
  const auto model = dt::geometric_model(50000, dt::kMaxClasses);
  std::vector<std::uint8_t> bytes;
  detail::RangeEncoder enc(bytes);
  for (int v : values) dt::encode_offset(enc, model, v);
  enc.finish();
  detail::DecodeTable table;
  table.build(model);
  detail::RangeDecoder dec(bytes);
  for (int v : values) EXPECT_EQ(dt::decode_offset(dec, table), v);
}

TEST(TransformModel, DeadZoneRoundsSmallOffsetsToTheCenter) {
  EXPECT_EQ(dt::quantize_offset(3.4, 3.0, 0.0), 0);
  EXPECT_EQ(dt::quantize_offset(3.6, 3.0, 0.0), 1);
  EXPECT_EQ(dt::quantize_offset(3.6, 3.0, 0.2), 0);  // 0.6 < 0.5 + 0.2
  EXPECT_EQ(dt::quantize_offset(3.8, 3.0, 0.2), 1);
  EXPECT_EQ(dt::quantize_offset(-1.6, 0.0, 0.2), -1);  // 1.6 < 1.5 + 0.2
  EXPECT_EQ(dt::quantize_offset(-1.8, 0.0, 0.2), -2);
  EXPECT_EQ(dt::quantize_offset(5.6, 0.0, 0.2), 5);
  EXPECT_EQ(dt::quantize_offset(1e12, 0.0, 0.0), 65535);
  EXPECT_EQ(dt::quantize_offset(-1e12, 0.0, 0.0), -65535);
}

TEST(TransformModel, FittedRhoIsNoWorseThanTheEstimate) {
  std::uint64_t counts[dt::alphabet(4)] = {500, 120, 110, 60, 55, 20, 18, 3, 2};
  const double mean_abs = (230 * 1.0 + 115 * 2.5 + 38 * 5.0 + 5 * 10.0) / 1000.0;
  const auto est = dt::rho_estimate(mean_abs);
  const auto fit = dt::fit_rho(counts, 4, mean_abs);
  EXPECT_LE(dt::model_cost_bits(counts, fit, 4), dt::model_cost_bits(counts, est, 4));
}

kv::KVCache pre_rope(kv::CacheShape shape, std::uint64_t seed) {
  auto c = synthetic_cache(shape, seed);
  c.info.rope_applied = false;
  return c;
}

using TempCalibration = test::TempTransformCalibration;

TEST(TransformCodec, HighBudgetRoundTripStaysWithinTheQuantizerBound) {
  // Every component coded with step s: each coefficient is off by at most
  // s/2, so each channel by at most sum_j |u_jc| s/2 <= sqrt(n) s/2 (the
  // column of an orthonormal basis has unit norm), plus float rounding of
  // the two projections (n products and sums of magnitude <= max|x|).
  const auto cache = pre_rope({2, 2, 96, 8}, 5);
  TempCalibration cal(cache, "bound");
  const ParamSet params = {
      {"basis", "calibration"}, {"calibration", cal.file.string()}, {"bits", "10"}, {"chunk_tokens", "40"}};
  const auto plan = transform::plan_transform(cache, params);
  const int n = 16;
  DecodeOptions o;
  o.profile_dir = cal.dir.string();
  const auto r = find_codec("transform").encode(cache, params);
  const auto d = decode(r.bytes, o);
  float xmax = 0;
  for (float v : cache.data()) xmax = std::max(xmax, std::abs(v));
  for (const auto& g : plan.groups) {
    ASSERT_EQ(g.coded_components(), n) << "layer " << g.layer;
    const double bound = std::sqrt(double(n)) * g.step / 2 * (1 + 1e-5) + 16.0 * n * 0x1p-23 * 2 * xmax;
    double worst = 0, sq = 0;
    int count = 0;
    for (int h = 0; h < 2; ++h)
      for (int t = 1; t < 96; ++t)
        for (int c = 0; c < 8; ++c) {
          const double e =
              std::abs(double(d.at(g.layer, g.kind, h, t, c)) - cache.at(g.layer, g.kind, h, t, c));
          worst = std::max(worst, e);
          sq += e * e, ++count;
        }
    EXPECT_LE(worst, bound) << "layer " << g.layer << " " << kv::to_string(g.kind);
    // Uniform quantization error: RMS step/sqrt(12) per coefficient, and so per channel.
    EXPECT_NEAR(std::sqrt(sq / count), g.step / std::sqrt(12.0), 0.35 * g.step / std::sqrt(12.0));
  }
}

TEST(TransformCodec, SinkAndRecentTokensAreExact) {
  const auto cache = synthetic_cache({2, 2, 50, 8}, 3);
  const auto r =
      find_codec("transform")
          .encode(cache,
                  {{"bits", "1"}, {"sink_tokens", "2"}, {"recent_tokens", "3"}, {"chunk_tokens", "16"}});
  const auto d = decode(r.bytes);
  for (int l = 0; l < 2; ++l)
    for (kv::Kind k : kv::kKinds)
      for (int h = 0; h < 2; ++h)
        for (int t : {0, 1, 47, 48, 49})
          for (int c = 0; c < 8; ++c)
            EXPECT_EQ(d.at(l, k, h, t, c), half_to_float(float_to_half(cache.at(l, k, h, t, c))));
}

// value_gain=0 in the squared-error tests: token gains trade squared error
// for relative error (and, on caches this small, a large share of the bits).
TEST(TransformCodec, MeetsTheBudgetAndLosesLessWithMoreBits) {
  const auto cache = synthetic_cache({4, 2, 300, 16}, 8);
  double last_error = 1e30;
  for (double bits : {0.5, 1.0, 2.0, 4.0}) {
    const auto r =
        find_codec("transform").encode(cache, {{"bits", std::to_string(bits)}, {"value_gain", "0"}});
    EXPECT_NEAR(r.size.bits_per_element(), bits, 0.15 * bits) << bits;
    const auto d = decode(r.bytes);
    double sq = 0;
    for (std::size_t i = 0; i < d.data().size(); ++i) sq += std::pow(d.data()[i] - cache.data()[i], 2);
    EXPECT_LT(sq, last_error) << bits;
    last_error = sq;
  }
}

TEST(TransformCodec, PlanEstimatesTheEncodedSize) {
  const auto cache = synthetic_cache({4, 2, 300, 16}, 8);
  for (const char* basis : {"cache"}) {
    const ParamSet p = {{"bits", "1.5"}, {"basis", basis}, {"grouping", "head"}};
    const auto plan = transform::plan_transform(cache, p);
    const auto r = find_codec("transform").encode(cache, p);
    EXPECT_NEAR(double(plan.estimate.total()), double(r.bytes.size()), 0.1 * double(r.bytes.size()));
    EXPECT_EQ(plan.groups.size(), 4u * 2 * 2);
    EXPECT_GT(plan.estimate.basis, 0u);
  }
}

TEST(TransformCodec, SameBytesOnAnyThreadCountAndDecodeSectionAgrees) {
  const auto cache = synthetic_cache({3, 2, 70, 8}, 4);
  const ParamSet p = {{"bits", "2"}, {"chunk_tokens", "32"}, {"grouping", "head"}};
  EncodeOptions one, two;
  one.threads = 1;
  two.threads = 2;
  const auto a = find_codec("transform").encode(cache, p, one);
  const auto b = find_codec("transform").encode(cache, p, two);
  ASSERT_EQ(a.bytes, b.bytes);
  const auto full = decode(a.bytes);
  const auto info = inspect_stream(a.bytes);
  for (std::size_t i = 0; i < info.sections.size(); ++i) {
    if (info.sections[i].kind != SectionKind::Chunk) continue;
    const auto c = decode_section(a.bytes, i);
    for (int h = 0; h < c.kv_heads; ++h)
      for (int t = 0; t < c.token_count; ++t)
        for (int x = 0; x < c.head_dim; ++x)
          ASSERT_EQ(c.values[(std::size_t(h) * c.token_count + t) * c.head_dim + x],
                    full.at(c.layer, c.kv, h, c.token_begin + t, x));
  }
}

TEST(TransformCodec, LayerWeightsSteerTheErrorAndAreValidated) {
  const auto cache = synthetic_cache({2, 2, 120, 8}, 9);
  auto error_of = [&](const std::string& weights, int layer) {
    const auto d =
        decode(find_codec("transform")
                   .encode(cache, {{"bits", "1.5"}, {"layer_weights", weights}, {"value_gain", "0"}})
                   .bytes);
    double e = 0;
    const auto a = cache.tensor(layer, kv::Kind::Value), b = d.tensor(layer, kv::Kind::Value);
    for (std::size_t i = 0; i < a.size(); ++i) e += std::pow(a[i] - b[i], 2);
    return e;
  };
  // Values of layer 1 weighted 50x: their error falls, layer 0's grows.
  EXPECT_LT(error_of("1,1,1,50", 1), error_of("1,1,1,1", 1));
  EXPECT_GT(error_of("1,1,1,50", 0), error_of("1,1,1,1", 0));
  for (const char* bad : {"1,1,1", "1,1,1,0", "1,1,x,1", "1,1,1,-2"})
    EXPECT_THROW(find_codec("transform").encode(cache, {{"layer_weights", bad}}), Error) << bad;
}

TEST(TransformCodec, NoCalibrationSaysHowToMakeOne) {
  const auto cache = synthetic_cache({2, 2, 20, 8}, 1);
  try {
    find_codec("transform").encode(cache, {{"basis", "calibration"}});
    FAIL() << "encoded without a calibration";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("kvscope-cli calibrate"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("basis=cache"), std::string::npos) << e.what();
  }
}

TEST(TransformCodec, StreamsNameTheCalibrationTheyNeed) {
  const auto cache = pre_rope({2, 2, 40, 8}, 6);
  std::vector<std::uint8_t> bytes;
  std::string hash;
  {
    TempCalibration cal(cache, "missing");
    const std::string file = read_file(cal.file);
    hash = calibration::file_hash({reinterpret_cast<const std::uint8_t*>(file.data()), file.size()});
    bytes = find_codec("transform").encode(cache, {{"calibration", cal.file.string()}}).bytes;
    DecodeOptions o;
    o.profile_dir = cal.dir.string();
    EXPECT_NO_THROW(decode(bytes, o));
  }
  DecodeOptions o;
  o.profile_dir = (std::filesystem::temp_directory_path() / "kvscope-transform-test-none").string();
  try {
    decode(bytes, o);
    FAIL() << "decoded without its calibration";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find(hash), std::string::npos) << e.what();
  }
}

TEST(TransformCodec, CalibratedBasisOfAnotherShapeIsRefused) {
  TempCalibration cal(pre_rope({2, 2, 40, 8}, 6), "shape");
  const auto other = pre_rope({3, 2, 40, 8}, 6);
  EXPECT_THROW(find_codec("transform").encode(other, {{"calibration", cal.file.string()}}), Error);
}

}  // namespace
}  // namespace kvscope::codec
