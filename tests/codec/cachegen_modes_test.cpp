// SPDX-License-Identifier: Apache-2.0
// cachegen's layout version 3 modes (docs/bitstream.md, "cachegen"): sinks,
// per-layer bins, float deltas, coded steps, coarse tables, and which layout
// version a stream is written with.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kv/rope.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

const Codec& cachegen() {
  return find_codec("cachegen");
}

// The layout version 2 behaviour (every version 3 feature off, tables
// shipped), with `changes`: each test turns on what it tests.
ParamSet v2(ParamSet changes = {}) {
  ParamSet p = {{"sinks", "0"},           {"delta_mode", "integer"},  {"step_coding", "fp16"},
                {"table_bits", "16"},     {"key_space", "post_rope"}, {"profile", ""},
                {"key_layer_splits", ""}, {"value_layer_splits", ""}, {"reconstruction", "0"}};
  for (auto& [k, v] : changes) p[k] = v;
  return p;
}

float f16(float x) {
  return half_to_float(float_to_half(x));
}

float round_half_even(float x) {
  return std::nearbyint(x);  // default rounding mode: to nearest, ties to even
}

// Integer deltas at scale=token: every quantized value within half its
// token's step, whose M comes from `bins[layer]`; the first `sinks` tokens
// exactly their f16 value.
void expect_integer_reconstruction(const kv::KVCache& cache, const kv::KVCache& dec,
                                   const std::vector<int>& kbins, const std::vector<int>& vbins, int sinks) {
  const auto& sh = cache.shape();
  for (int l = 0; l < sh.layers; ++l)
    for (auto k : kv::kKinds) {
      const int M = (k == kv::Kind::Key ? kbins : vbins)[std::size_t(l)] / 2 - 1;
      for (int t = 0; t < sh.tokens; ++t) {
        const float step = test::token_step(cache, l, k, t, M);
        for (int c = 0; c < sh.channels(); ++c) {
          const float x = cache.channel_value(l, k, t, c), y = dec.channel_value(l, k, t, c);
          if (t < sinks)
            ASSERT_EQ(y, f16(x)) << "sink token " << t;
          else
            ASSERT_LE(std::fabs(x - y), 0.5f * step * (1 + 1e-5f)) << "layer " << l << " token " << t;
        }
      }
    }
}

TEST(CachegenModes, SinkTokensDecodeExactlyAndTheRestWithinHalfAStep) {
  const auto cache = synthetic_cache({3, 2, 50, 8}, 31);
  const std::vector<int> kb = {16, 24, 24}, vb = {16, 10, 10};
  // Sinks inside the first chunk, across chunk boundaries, and covering the whole cache.
  for (const auto& [sinks, chunk] : std::vector<std::pair<int, int>>{{1, 1024}, {3, 16}, {20, 8}, {60, 16}}) {
    const ParamSet p = {{"sinks", std::to_string(sinks)},
                        {"chunk_tokens", std::to_string(chunk)},
                        {"key_bins", "16,24"},
                        {"key_layer_splits", "1"},
                        {"value_bins", "16,10"},
                        {"value_layer_splits", "1"}};
    const auto dec = decode(cachegen().encode(cache, v2(p)).bytes);
    expect_integer_reconstruction(cache, dec, kb, vb, sinks);
  }
}

TEST(CachegenModes, SinksCostSixteenBitsEachAndShrinkTheStepsOfTheRest) {
  const auto cache = synthetic_cache({2, 2, 64, 8}, 4);
  const auto none = cachegen().encode(cache, v2());
  const auto one = cachegen().encode(cache, v2({{"sinks", "1"}}));
  // One token fewer is quantized (one step fewer), its values ride as f16.
  EXPECT_EQ(none.size.step_bytes - one.size.step_bytes, 2u * 2 * 2);
  EXPECT_GT(one.size.payload_bytes, none.size.payload_bytes);
}

TEST(CachegenModes, OneBinCountPerLayerWithoutSplits) {
  const auto cache = synthetic_cache({5, 1, 40, 8}, 12);
  const ParamSet p = {{"key_bins", "4,8,16,32,64"},
                      {"key_layer_splits", ""},
                      {"value_bins", "64,32,16,8,4"},
                      {"value_layer_splits", ""}};
  const auto dec = decode(cachegen().encode(cache, v2(p)).bytes);
  expect_integer_reconstruction(cache, dec, {4, 8, 16, 32, 64}, {64, 32, 16, 8, 4}, 0);
  // A list of another length still needs its splits.
  EXPECT_THROW(cachegen().encode(cache, v2({{"key_bins", "4,8,16,32"}, {"key_layer_splits", ""}})), Error);
}

// docs/bitstream.md's float-delta rules written out on their own: anchors
// Q = round(x / step) on anchor_M; other tokens Q = round((x - x'_anchor) /
// step) on M; x' = x'_anchor + Q * step. Steps per token (one slot) or per
// (token, head).
kv::KVCache reference_float_decode(const kv::KVCache& cache, int M, int Ma, int group, int chunk, int sinks,
                                   bool per_head) {
  const auto& sh = cache.shape();
  kv::KVCache out(sh);
  const int C = sh.channels(), D = sh.head_dim;
  for (int l = 0; l < sh.layers; ++l)
    for (auto k : kv::kKinds)
      for (int b = 0; b < sh.tokens; b += chunk) {
        const int count = std::min(chunk, sh.tokens - b);
        const int ns = std::clamp(sinks - b, 0, count);
        for (int t = 0; t < ns; ++t)
          for (int c = 0; c < C; ++c)
            out.channel_value(l, k, b + t, c) = f16(cache.channel_value(l, k, b + t, c));
        std::vector<float> anchor(C, 0.0f), r(C);
        for (int t = 0; t < count - ns; ++t) {
          const int tok = b + ns + t;
          const bool is_anchor = t % group == 0;
          const int Mt = is_anchor ? Ma : M;
          for (int c = 0; c < C; ++c)
            r[c] =
                is_anchor ? cache.channel_value(l, k, tok, c) : cache.channel_value(l, k, tok, c) - anchor[c];
          const int slots = per_head ? sh.kv_heads : 1, width = C / slots;
          for (int s = 0; s < slots; ++s) {
            float amax = 0;
            for (int c = s * width; c < (s + 1) * width; ++c) amax = std::max(amax, std::fabs(r[c]));
            const float step = test::int_step(amax, Mt);
            for (int c = s * width; c < (s + 1) * width; ++c) {
              const int q =
                  step > 0 ? int(std::clamp(round_half_even(r[c] / step), float(-Mt), float(Mt))) : 0;
              const float change = float(q) * step;
              const float x = is_anchor ? change : anchor[c] + change;
              if (is_anchor) anchor[c] = change;
              out.channel_value(l, k, tok, c) = x;
            }
          }
        }
        (void)D;
      }
  return out;
}

TEST(CachegenModes, FloatDeltasFollowTheDocumentedRules) {
  const auto cache = synthetic_cache({2, 2, 45, 8}, 77);
  struct Case {
    int sinks, chunk, group, anchor_bins, bins;
    const char* scale;
  };
  for (const Case& c : {Case{0, 1024, 10, 256, 16, "token"}, Case{2, 16, 4, 64, 12, "head"},
                        Case{20, 8, 3, 256, 24, "token"}, Case{1, 1024, 1, 32, 8, "token"}}) {
    const ParamSet p = {{"delta_mode", "float"},
                        {"sinks", std::to_string(c.sinks)},
                        {"chunk_tokens", std::to_string(c.chunk)},
                        {"group_size", std::to_string(c.group)},
                        {"anchor_bins", std::to_string(c.anchor_bins)},
                        {"key_bins", std::to_string(c.bins)},
                        {"key_layer_splits", ""},
                        {"value_bins", std::to_string(c.bins)},
                        {"value_layer_splits", ""},
                        {"scale", c.scale}};
    const auto dec = decode(cachegen().encode(cache, v2(p)).bytes);
    const auto ref = reference_float_decode(cache, c.bins / 2 - 1, c.anchor_bins / 2 - 1, c.group, c.chunk,
                                            c.sinks, std::string(c.scale) == "head");
    ASSERT_EQ(dec.data().size(), ref.data().size());
    for (std::size_t i = 0; i < ref.data().size(); ++i)
      ASSERT_EQ(dec.data()[i], ref.data()[i])
          << "value " << i << " scale " << c.scale << " sinks " << c.sinks;
  }
}

TEST(CachegenModes, FloatDeltasNeedAStepPerToken) {
  const auto cache = synthetic_cache({2, 1, 10, 4}, 3);
  try {
    cachegen().encode(cache, v2({{"delta_mode", "float"}, {"scale", "channel"}}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("delta_mode"), std::string::npos);
  }
}

TEST(CachegenModes, CodedStepsAreLosslessAndSmaller) {
  const auto cache = synthetic_cache({3, 3, 300, 16}, 8);
  for (const char* scale : {"token", "head", "channel"}) {
    const auto plain = cachegen().encode(cache, v2({{"scale", scale}, {"chunk_tokens", "128"}}));
    const auto coded =
        cachegen().encode(cache, v2({{"scale", scale}, {"chunk_tokens", "128"}, {"step_coding", "coded"}}));
    EXPECT_EQ(decode(plain.bytes).data().size(), decode(coded.bytes).data().size());
    const auto a = decode(plain.bytes), b = decode(coded.bytes);
    EXPECT_TRUE(std::equal(a.data().begin(), a.data().end(), b.data().begin())) << scale;
    // Per-channel steps vary too much to gain; the chunk then keeps f16 steps (plus one byte).
    if (std::string(scale) == "channel")
      EXPECT_LE(coded.size.step_bytes, plain.size.step_bytes + 3 * 2 * 3) << scale;
    else
      EXPECT_LT(coded.size.step_bytes, plain.size.step_bytes) << scale;
    EXPECT_EQ(coded.size.payload_bytes, plain.size.payload_bytes) << scale;
  }
}

TEST(CachegenModes, CoarseTablesAreSmallerAndDecodeTheSameValues) {
  const auto cache = synthetic_cache({3, 2, 200, 16}, 5);
  const auto full = cachegen().encode(cache, v2());
  const auto coarse = cachegen().encode(cache, v2({{"table_bits", "10"}}));
  EXPECT_LT(coarse.size.table_bytes, full.size.table_bytes);
  const auto a = decode(full.bytes), b = decode(coarse.bytes);
  EXPECT_TRUE(std::equal(a.data().begin(), a.data().end(), b.data().begin()));
}

TEST(CachegenModes, PlainStreamsStayVersion2AndNewModesAreVersion3) {
  const auto cache = synthetic_cache({2, 1, 12, 4}, 1);
  const auto plain = inspect_stream(cachegen().encode(cache, v2({{"sinks", "0"}})).bytes);
  EXPECT_EQ(plain.codec_version, 2);
  for (const char* v3 : {"sinks", "delta_mode", "anchor_bins", "step_coding", "table_bits", "key_space"})
    EXPECT_EQ(plain.params.count(v3), 0u) << v3;
  for (const ParamSet& p : std::vector<ParamSet>{
           {{"sinks", "1"}}, {{"delta_mode", "float"}}, {{"step_coding", "coded"}}, {{"table_bits", "12"}}}) {
    const auto info = inspect_stream(cachegen().encode(cache, v2(p)).bytes);
    EXPECT_EQ(info.codec_version, 3) << p.begin()->first;
    for (const char* v3 : {"sinks", "delta_mode", "anchor_bins", "step_coding", "table_bits", "key_space"})
      EXPECT_EQ(info.params.count(v3), 1u) << v3;
  }
}

// A version 2 stream carrying a version 3 parameter, or a version 3 stream
// missing one, is malformed: defaults must never reinterpret a stream.
TEST(CachegenModes, VersionAndParametersMustAgree) {
  const auto cache = synthetic_cache({2, 1, 12, 4}, 1);
  auto bytes = cachegen().encode(cache, v2({{"sinks", "1"}})).bytes;
  // Patch the layout version 3 -> 2 (u16 after the codec name) and reseal.
  const std::size_t at = 16 + 2 + std::string("cachegen").size();
  ASSERT_EQ(bytes[at], 3);
  bytes[at] = 2;
  test::reseal(bytes);
  try {
    decode(bytes);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
    EXPECT_NE(std::string(e.what()).find("sinks"), std::string::npos) << e.what();
  }
  auto plain = cachegen().encode(cache, v2()).bytes;
  ASSERT_EQ(plain[at], 2);
  plain[at] = 3;
  test::reseal(plain);
  try {
    decode(plain);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format);
  }
}

// key_space=pre_rope decodes to exactly what coding the RoPE-free keys and
// re-applying RoPE gives (kvscope/kv/rope.h's operations), and keeps sinks
// as given.
TEST(CachegenModes, PreRopeKeysAreCodedWithoutRopeAndRotatedBack) {
  auto cache = synthetic_cache({3, 2, 40, 8}, 19);
  ASSERT_TRUE(cache.info.rope_applied);
  cache.info.positions.resize(40);
  for (int t = 0; t < 40; ++t) cache.info.positions[t] = 100 + 3 * t;  // not 0..T-1
  const ParamSet common = {{"chunk_tokens", "16"}, {"sinks", "2"}};
  ParamSet pre = common;
  pre["key_space"] = "pre_rope";
  const auto bytes = cachegen().encode(cache, v2(pre)).bytes;
  EXPECT_EQ(inspect_stream(bytes).params.at("key_space"), "pre_rope");
  const auto dec = decode(bytes);
  EXPECT_TRUE(dec.info.rope_applied);
  // The same values by hand: remove RoPE, code as is, decode, apply RoPE.
  kv::KVCache stripped = cache;
  kv::remove_rope(stripped);
  auto by_hand = decode(cachegen().encode(stripped, v2(common)).bytes);
  ASSERT_FALSE(by_hand.info.rope_applied);
  kv::apply_rope(by_hand);
  for (int l = 0; l < 3; ++l)
    for (int t = 2; t < 40; ++t)  // quantized tokens
      for (int c = 0; c < 16; ++c)
        ASSERT_EQ(dec.channel_value(l, kv::Kind::Key, t, c), by_hand.channel_value(l, kv::Kind::Key, t, c))
            << "layer " << l << " token " << t << " channel " << c;
  for (int l = 0; l < 3; ++l)
    for (int t = 0; t < 2; ++t)  // sinks: exact, as given
      for (int c = 0; c < 16; ++c)
        EXPECT_EQ(dec.channel_value(l, kv::Kind::Key, t, c),
                  f16(cache.channel_value(l, kv::Kind::Key, t, c)));
  // Values are untouched by the key space.
  const auto post = decode(cachegen().encode(cache, v2(common)).bytes);
  for (int l = 0; l < 3; ++l)
    EXPECT_TRUE(std::equal(post.tensor(l, kv::Kind::Value).begin(), post.tensor(l, kv::Kind::Value).end(),
                           dec.tensor(l, kv::Kind::Value).begin()));
  // decode_section rotates a lone chunk the same way.
  const auto info = inspect_stream(bytes);
  for (std::size_t i = 0; i < info.sections.size(); ++i) {
    const auto& s = info.sections[i];
    if (s.kind != SectionKind::Chunk || s.kv != kv::Kind::Key || s.layer != 1 || s.token_begin != 16)
      continue;
    const auto chunk = decode_section(bytes, i);
    for (int t = 0; t < chunk.token_count; ++t)
      for (int d = 0; d < 8; ++d)
        EXPECT_EQ(chunk.values[std::size_t(t) * 8 + d], dec.at(1, kv::Kind::Key, 0, 16 + t, d));
  }
}

// rounding (encoder only): a dead zone sends more zeros, so fewer bytes; a
// value then decodes within (1 - rounding) of its token's step instead of
// half of it; the stream does not record the parameter.
TEST(CachegenModes, DeadZoneRoundingSendsFewerBytesWithinItsBound) {
  const auto cache = synthetic_cache({2, 2, 96, 16}, 11);
  const ParamSet nearest =
      v2({{"key_bins", "16,16"}, {"value_bins", "10,10"}, {"scale", "token"}, {"delta", "never"}});
  ParamSet dead = nearest;
  dead["rounding"] = "0.3";
  const auto a = cachegen().encode(cache, nearest), b = cachegen().encode(cache, dead);
  EXPECT_LT(b.size.encoded_bytes, a.size.encoded_bytes);
  EXPECT_EQ(inspect_stream(b.bytes).params.count("rounding"), 0u);
  const auto db = decode(b.bytes);
  const auto& sh = cache.shape();
  bool past_half = false;
  for (int l = 0; l < sh.layers; ++l)
    for (auto k : kv::kKinds) {
      const int M = (k == kv::Kind::Key ? 16 : 10) / 2 - 1;
      for (int t = 0; t < sh.tokens; ++t) {
        const float step = test::token_step(cache, l, k, t, M);
        for (int c = 0; c < sh.channels(); ++c) {
          const float err = std::fabs(db.channel_value(l, k, t, c) - cache.channel_value(l, k, t, c));
          EXPECT_LE(err, 0.7f * step * 1.0001f) << l << " " << t << " " << c;
          past_half = past_half || err > 0.5f * step * 1.0001f;
        }
      }
    }
  EXPECT_TRUE(past_half);  // the dead zone is in effect, not plain rounding
}

// profile=auto: the model's calibration from the calibration folder, kept
// only where it codes the cache in fewer bits than shipped tables; another
// model's calibration is never used.
TEST(CachegenModes, AutoTablesUseTheModelsCalibrationWhenSmaller) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope_auto_tables_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ASSERT_EQ(::setenv("KVSCOPE_CALIBRATION_DIR", dir.c_str(), 1), 0);
  const kv::CacheShape shape{3, 2, 200, 16};
  auto cache = synthetic_cache(shape, 7);
  cache.info.model_name = "model-a";
  const ParamSet params = {{"sinks", "1"}, {"profile", "auto"}};
  // No calibration yet: tables ship.
  const auto shipped = cachegen().encode(cache, v2(params));
  EXPECT_EQ(inspect_stream(shipped.bytes).sections.front().kind, SectionKind::Table);
  // The model's calibration (from this very cache: synthetic seeds draw new channel statistics, so only
  // tables that saw them can beat shipped ones).
  ParamSet calib_params = v2(params);
  calib_params["profile"] = "";
  const auto bytes = calibration::build_profile(std::vector<kv::KVCache>{cache}, calib_params);
  calibration::save_profile(bytes, dir);
  const auto calibrated = cachegen().encode(cache, v2(params));
  const auto info = inspect_stream(calibrated.bytes);
  for (const auto& s : info.sections) EXPECT_EQ(s.kind, SectionKind::Chunk);
  EXPECT_LT(calibrated.size.encoded_bytes, shipped.size.encoded_bytes);
  EXPECT_EQ(test::hash_values(decode(calibrated.bytes).data()),
            test::hash_values(decode(shipped.bytes).data()));
  // Another model's cache of the same shape ignores it.
  auto other = cache;
  other.info.model_name = "model-b";
  EXPECT_EQ(inspect_stream(cachegen().encode(other, v2(params)).bytes).sections.front().kind,
            SectionKind::Table);
  // Tables calibrated on an unrelated cache code worse than shipped ones: auto ships.
  std::filesystem::remove_all(dir);
  auto unrelated = synthetic_cache(shape, 99);
  unrelated.info.model_name = "model-a";
  calibration::save_profile(calibration::build_profile(std::vector<kv::KVCache>{unrelated}, calib_params),
                            dir);
  EXPECT_EQ(inspect_stream(cachegen().encode(cache, v2(params)).bytes).sections.front().kind,
            SectionKind::Table);
  ::unsetenv("KVSCOPE_CALIBRATION_DIR");
  std::filesystem::remove_all(dir);
}

// Regression: the extended cache info (RoPE tables) used to follow the codec
// header, so decoders, which find the codec header 4 bytes before the end of
// the header body, read the wrong bytes as cachegen's header and expected
// Table sections that a stream with calibration tables does not have.
TEST(CachegenModes, CalibratedStreamsWithRopeTablesDecode) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope_rope_tables_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto cache = synthetic_cache({2, 2, 40, 8}, 3);
  cache.info.rope_inv_freq.assign(2, std::vector<double>{1.0, 0.1, 0.01, 0.001});
  const ParamSet params = v2({{"sinks", "1"}, {"key_space", "pre_rope"}});
  const auto path =
      calibration::save_profile(calibration::build_profile(std::vector<kv::KVCache>{cache}, params), dir);
  ParamSet with = params;
  with["profile"] = path.string();
  const auto bytes = cachegen().encode(cache, with).bytes;
  const auto info = inspect_stream(bytes);
  EXPECT_EQ(info.info.rope_inv_freq, cache.info.rope_inv_freq);
  for (const auto& s : info.sections) EXPECT_EQ(s.kind, SectionKind::Chunk);
  DecodeOptions o;
  o.profile_dir = dir.string();
  const auto shipped = decode(cachegen().encode(cache, params).bytes);
  EXPECT_EQ(test::hash_values(decode(bytes, o).data()), test::hash_values(shipped.data()));
  std::filesystem::remove_all(dir);
}

// Every version 3 mode under truncation, bit flips and tampering with the
// CRCs recomputed: an Error, never a crash or a wrong-sized cache.
TEST(CachegenModes, CorruptVersion3StreamsAreErrorsNeverCrashes) {
  const auto cache = synthetic_cache({2, 1, 23, 8}, 9);
  for (const ParamSet& p : std::vector<ParamSet>{
           {{"chunk_tokens", "8"}, {"sinks", "3"}, {"step_coding", "coded"}, {"table_bits", "10"}},
           {{"chunk_tokens", "8"}, {"sinks", "9"}, {"delta_mode", "float"}, {"group_size", "3"}},
           {{"chunk_tokens", "16"}, {"delta_mode", "float"}, {"scale", "head"}, {"step_coding", "coded"}},
           {{"chunk_tokens", "8"}, {"key_space", "pre_rope"}, {"sinks", "1"}},
       }) {
    const auto valid = cachegen().encode(cache, v2(p)).bytes;
    for (std::size_t n = 0; n < valid.size(); n += 7) {
      std::vector<std::uint8_t> cut(valid.begin(), valid.begin() + n);
      EXPECT_THROW(decode(cut), Error) << "cut at " << n;
    }
    DecodeOptions o;
    o.max_elements = 1 << 20;
    o.threads = 1;
    for (const auto& m : test::mutations(valid, 300, 17)) {
      try {
        auto d = decode(m, o);
        EXPECT_EQ(d.data().size(), d.shape().elements());
      } catch (const Error&) {
      }
    }
  }
}

}  // namespace
}  // namespace kvscope::codec
