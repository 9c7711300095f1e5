// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/common/error.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

// Recomputes the step the encoder uses for each value, from the stream's
// `scale`: per (chunk, channel), per token over all channels, or per (token,
// head).
// Keys are checked as cached: callers code them after RoPE (key_space=post_rope).
void expect_within_half_step(const kv::KVCache& cache, const kv::KVCache& dec, const ParamSet& params) {
  const auto info = inspect_stream(find_codec("cachegen").encode(cache, params).bytes);
  ASSERT_TRUE(!info.params.count("key_space") || info.params.at("key_space") == "post_rope");
  const auto& sh = cache.shape();
  auto bins_of = [&](const std::string& b, const std::string& s, int l) {
    std::vector<int> bins, splits;
    std::stringstream bs(info.params.at(b)), ss(info.params.at(s));
    std::string x;
    while (std::getline(bs, x, ',')) bins.push_back(std::stoi(x));
    while (std::getline(ss, x, ',')) splits.push_back(std::stoi(x));
    if (splits.empty() && bins.size() > 1) return bins[std::size_t(l)];  // one per layer
    std::size_t g = 0;
    while (g < splits.size() && l >= splits[g]) ++g;
    return bins[g];
  };
  const int ct = std::stoi(info.params.at("chunk_tokens"));
  const std::string scale = info.params.at("scale");
  // Centroid reconstruction (layout version 5) moves a value up to
  // reconstruction / 6 of a step from its bin's middle.
  const float spread =
      0.5f +
      (info.params.count("reconstruction") ? std::stof(info.params.at("reconstruction")) / 6.0f : 0.0f);
  for (int l = 0; l < sh.layers; ++l)
    for (auto k : kv::kKinds) {
      const int bins = k == kv::Kind::Key ? bins_of("key_bins", "key_layer_splits", l)
                                          : bins_of("value_bins", "value_layer_splits", l);
      const int M = bins / 2 - 1;
      for (int b = 0; b < sh.tokens; b += ct)
        for (int c = 0; c < sh.channels(); ++c) {
          const int e = std::min(sh.tokens, b + ct);
          for (int t = b; t < e; ++t) {
            // The values sharing (c, t)'s step.
            int t0 = t, t1 = t + 1, c0 = 0, c1 = sh.channels();
            if (scale == "channel") t0 = b, t1 = e, c0 = c, c1 = c + 1;
            if (scale == "head") c0 = c / sh.head_dim * sh.head_dim, c1 = c0 + sh.head_dim;
            float amax = 0;
            for (int u = t0; u < t1; ++u)
              for (int x = c0; x < c1; ++x) amax = std::max(amax, std::fabs(cache.channel_value(l, k, u, x)));
            const float step = test::int_step(amax, M);
            ASSERT_LE(std::fabs(cache.channel_value(l, k, t, c) - dec.channel_value(l, k, t, c)),
                      spread * step * (1 + 1e-5f))
                << "scale " << scale << " layer " << l << " channel " << c << " token " << t;
          }
        }
    }
}

TEST(Cachegen, ErrorWithinHalfStepForSeveralSettings) {
  const auto cache = synthetic_cache({5, 2, 70, 8}, 21);
  for (const ParamSet& p : std::vector<ParamSet>{
           {},
           {{"group_size", "1"}},
           {{"group_size", "7"}, {"chunk_tokens", "32"}},
           {{"scale", "head"}, {"delta", "always"}},
           {{"scale", "channel"}, {"group_size", "7"}},
           {{"key_bins", "256,4"},
            {"key_layer_splits", "2"},
            {"value_bins", "8"},
            {"value_layer_splits", ""}},
       }) {
    ParamSet q = p;
    q["key_space"] = "post_rope";
    const auto r = find_codec("cachegen").encode(cache, q);
    expect_within_half_step(cache, decode(r.bytes), q);
  }
}

TEST(Cachegen, DefaultsScaleWithTheLayerCount) {
  kv::CacheShape s30{30, 3, 0, 64}, s12{12, 3, 0, 64};
  auto get = [](const std::vector<ParamSpec>& ps, const std::string& n) {
    for (const auto& p : ps)
      if (p.name == n) return p.default_value;
    return std::string("?");
  };
  const Codec& c = find_codec("cachegen");
  // One bin count per layer (the default model's plan, stretched to other depths), no splits.
  auto entries = [](const std::string& list) { return 1 + std::count(list.begin(), list.end(), ','); };
  EXPECT_EQ(entries(get(c.params(&s30), "key_bins")), 30);
  EXPECT_EQ(entries(get(c.params(&s12), "key_bins")), 12);
  EXPECT_EQ(entries(get(c.params(&s12), "value_bins")), 12);
  EXPECT_EQ(get(c.params(&s30), "key_layer_splits"), "");
  EXPECT_EQ(get(c.params(&s30), "value_layer_splits"), "");
  EXPECT_EQ(get(c.params(&s30), "group_size"), "10");
  // The 12-layer plan takes the 30-layer plan's entries at the same relative depth.
  const std::string k30 = get(c.params(&s30), "key_bins"), k12 = get(c.params(&s12), "key_bins");
  EXPECT_EQ(k12.substr(0, k12.find(',')), k30.substr(0, k30.find(',')));
  EXPECT_EQ(k12.substr(k12.rfind(',') + 1), k30.substr(k30.rfind(',') + 1));
  kv::CacheShape s1{1, 2, 0, 8};
  const auto one = find_codec("cachegen").encode(synthetic_cache({1, 2, 20, 8}, 3), {});
  EXPECT_GT(one.size.encoded_bytes, 0u) << "a one-layer model encodes with its defaults";
  (void)s1;
}

TEST(Cachegen, MismatchedSplitsNameTheParameter) {
  const auto cache = synthetic_cache({5, 1, 10, 4}, 2);
  try {
    find_codec("cachegen").encode(cache, {{"key_bins", "32,16"}, {"key_layer_splits", "2,3"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("key_layer_splits"), std::string::npos);
  }
}

TEST(Cachegen, CodedPayloadWithinOnePercentOfEntropy) {
  const auto cache = synthetic_cache({4, 3, 1024, 64}, 5);
  const auto r = find_codec("cachegen").encode(cache, {});
  const double entropy_bytes = r.size.entropy_bits_per_element * double(r.size.elements) / 8.0;
  EXPECT_GT(entropy_bytes, 0);
  EXPECT_LE(double(r.size.payload_bytes), 1.01 * entropy_bytes);
  EXPECT_GE(double(r.size.payload_bytes), 0.99 * entropy_bytes);
  EXPECT_LT(r.size.bits_per_element(), 8.0);
}

TEST(Cachegen, DeltaCodingBeatsCodingRawSymbols) {
  // group_size 1 = every token an anchor: no token-locality gain.
  const auto cache = synthetic_cache({4, 2, 400, 32}, 6);
  const auto delta = find_codec("cachegen").encode(cache, {});
  const auto raw = find_codec("cachegen").encode(cache, {{"group_size", "1"}});
  EXPECT_LT(delta.size.entropy_bits_per_element, raw.size.entropy_bits_per_element);
}

TEST(Cachegen, ProfileModeShipsNoTablesAndDecodesFromProfileDir) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope_profile_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const kv::CacheShape shape{4, 2, 300, 16};
  // Calibrated on the object itself: synthetic seeds draw new channel means,
  // unlike caches of one real model, so only a profile that has seen these
  // channels can beat shipped tables here.
  std::vector<kv::KVCache> calib = {synthetic_cache(shape, 7)};
  const auto bytes = calibration::build_profile(calib, {});
  const auto path = calibration::save_profile(bytes, dir);
  EXPECT_EQ(path.filename().string(), calibration::profile_hash(bytes) + ".kvsprof");

  const auto cache = synthetic_cache(shape, 7);
  // Bin midpoints: centroid levels come from the tables, which differ here.
  const auto with_tables = find_codec("cachegen").encode(cache, {{"reconstruction", "0"}});
  const auto with_profile =
      find_codec("cachegen").encode(cache, {{"profile", path.string()}, {"reconstruction", "0"}});
  EXPECT_LT(with_profile.size.encoded_bytes, with_tables.size.encoded_bytes);
  const auto info = inspect_stream(with_profile.bytes);
  for (const auto& s : info.sections) EXPECT_EQ(s.kind, SectionKind::Chunk);

  DecodeOptions o;
  o.profile_dir = dir.string();
  const auto a = decode(with_profile.bytes, o);
  const auto b = decode(with_tables.bytes);
  EXPECT_EQ(test::hash_values(a.data()), test::hash_values(b.data())) << "same symbols either way";
  EXPECT_EQ(decode_section(with_profile.bytes, 3, o).values.size(), 2u * 300 * 16);

  o.profile_dir = (dir / "elsewhere").string();
  try {
    decode(with_profile.bytes, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find(calibration::profile_hash(bytes)), std::string::npos);
  }
  // A profile for another shape is refused at encode time.
  const auto other = synthetic_cache({3, 2, 50, 16}, 7);
  EXPECT_THROW(find_codec("cachegen").encode(other, {{"profile", path.string()}}), Error);
  std::filesystem::remove_all(dir);
}

TEST(Cachegen, ConstantChannelsAndZerosRoundTrip) {
  kv::KVCache cache(kv::CacheShape{2, 1, 25, 4});
  for (int t = 0; t < 25; ++t) cache.at(1, kv::Kind::Value, 0, t, 2) = 3.5f;
  const auto d = decode(find_codec("cachegen").encode(cache, {}).bytes);
  EXPECT_LE(kv::max_abs_difference(cache, d), 3.5f / 15 / 2 * 1.001f);
  EXPECT_EQ(d.at(0, kv::Kind::Key, 0, 3, 1), 0.0f);
}

}  // namespace
}  // namespace kvscope::codec

namespace kvscope::codec {
namespace {
TEST(Cachegen, AutoDeltaIsNeverWorseThanEitherFixedChoice) {
  const auto cache = synthetic_cache({3, 2, 200, 16}, 12);
  const auto size = [&](const char* mode) {
    return find_codec("cachegen").encode(cache, {{"delta", mode}}).size.encoded_bytes;
  };
  const auto a = size("auto"), d = size("always"), n = size("never");
  EXPECT_LE(a, d);
  EXPECT_LE(a, n + n / 100);
  for (const char* mode : {"always", "never"}) {
    const ParamSet p = {{"delta", mode}, {"key_space", "post_rope"}};
    const auto r = find_codec("cachegen").encode(cache, p);
    expect_within_half_step(cache, decode(r.bytes), p);
  }
}
}  // namespace
}  // namespace kvscope::codec
