// SPDX-License-Identifier: Apache-2.0
// Export -> import -> decode gives the same cache, bit for bit, as decoding
// the original bitstream; metadata, levels, text and reference survive.
#include <gtest/gtest.h>

#include <atomic>

#include "hdf5_test_util.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration.h"

namespace kvscope {
namespace {

using test::TempDir;

TEST(Hdf5RoundTrip, EveryRegisteredCodecIsBitExact) {
  TempDir dir("rt");
  const kv::KVCache cache = test::make_cache();
  const auto codecs = codec::all_codecs();
  ASSERT_FALSE(codecs.empty());
  for (const codec::Codec* c : codecs) {
    SCOPED_TRACE(c->name());
    const io::Hdf5Contents contents = test::contents_for(cache, c->name());
    const auto path = dir / (c->name() + ".h5");
    const auto result = io::export_hdf5(path, contents);
    EXPECT_EQ(result.bitstream_bytes, contents.levels[0].bitstream.size());
    EXPECT_EQ(result.file_bytes, std::filesystem::file_size(path));

    const io::Hdf5Contents back = io::import_hdf5(path);
    ASSERT_EQ(back.levels.size(), 1u);
    EXPECT_EQ(back.levels[0].bitstream, contents.levels[0].bitstream);
    EXPECT_EQ(back.levels[0].config.codec, c->name());
    // Every parameter the codec declares is stated with its effective value:
    // the defaults, except that the channel weighting is off in a stream that
    // does not carry it (no calibration here): cachegen's channel_weighting,
    // transform's key_weighting (its value token gains are on: layout version 3).
    const auto info = codec::inspect_stream(contents.levels[0].bitstream);
    const bool weighted =
        c->name() == "cachegen" ? info.params.count("channel_weighting") > 0 : c->name() != "transform";
    if (c->name() == "transform") EXPECT_EQ(info.codec_version, 3);
    for (const auto& spec : c->params(&cache.shape())) {
      ASSERT_TRUE(back.levels[0].config.params.count(spec.name)) << spec.name;
      const std::string expected =
          !weighted && c->name() == "cachegen" && spec.name == "channel_weighting" ? "off"
          : !weighted && c->name() == "transform" && spec.name == "key_weighting"  ? "0"
                                                                                   : spec.default_value;
      EXPECT_EQ(back.levels[0].config.params.at(spec.name), expected) << spec.name;
    }
    const kv::KVCache expected = codec::decode(contents.levels[0].bitstream);
    const kv::KVCache decoded = io::decode_hdf5_level(back, 0);
    EXPECT_TRUE(test::bit_identical(decoded, expected));
    // The section table covers the bitstream (so Python users can slice it).
    std::uint64_t covered = 0;
    for (const auto& s : back.levels[0].sections) covered = std::max(covered, s.offset + s.length);
    EXPECT_EQ(covered, back.levels[0].bitstream.size());
  }
}

TEST(Hdf5RoundTrip, SectionsFollowTheCodecsDirectory) {
  TempDir dir("dir");
  const kv::KVCache cache = test::make_cache({2, 2, 40, 16});
  for (const codec::Codec* c : codec::all_codecs()) {
    SCOPED_TRACE(c->name());
    const auto contents = test::contents_for(cache, c->name());
    io::export_hdf5(dir / (c->name() + ".h5"), contents);
    const auto back = io::import_hdf5(dir / (c->name() + ".h5"));
    const auto info = codec::inspect_stream(contents.levels[0].bitstream);
    const auto& sections = back.levels[0].sections;
    ASSERT_FALSE(sections.empty());
    EXPECT_EQ(sections.front().kind, "header");
    EXPECT_EQ(sections.front().offset, 0u);
    std::size_t described = 0;
    std::uint64_t pos = 0;
    for (const auto& s : sections) {
      EXPECT_EQ(s.offset, pos);  // tiles the bitstream
      pos = s.offset + s.length;
      EXPECT_NE(s.kind, "other");
      if (s.kind == "table" || s.kind == "chunk") ++described;
      if (s.kind == "chunk") {
        EXPECT_GE(s.chunk, 0);
        EXPECT_LT(s.token_begin, s.token_end);
        EXPECT_LE(s.token_end, cache.shape().tokens);
      }
    }
    EXPECT_EQ(pos, contents.levels[0].bitstream.size());
    EXPECT_EQ(described, info.sections.size());
  }
}

TEST(Hdf5RoundTrip, ContentsFromBitstreamCarryTheHeader) {
  TempDir dir("frombs");
  const kv::KVCache cache = test::make_cache();
  const codec::Codec* c = codec::all_codecs().back();
  auto bytes = codec::encode(cache, codec::CodecConfig{c->name(), {}}).bytes;
  const auto contents = io::hdf5_contents_from_bitstream(bytes, "cli");
  EXPECT_EQ(contents.shape, cache.shape());
  EXPECT_EQ(contents.levels.at(0).config.codec, c->name());
  io::export_hdf5(dir / "b.h5", contents);
  const auto back = io::import_hdf5(dir / "b.h5");
  EXPECT_EQ(back.levels[0].bitstream, bytes);
  EXPECT_EQ(back.levels[0].label, "cli");
  EXPECT_TRUE(test::bit_identical(io::decode_hdf5_level(back), codec::decode(bytes)));
}

TEST(Hdf5RoundTrip, MetadataSurvives) {
  TempDir dir("meta");
  const kv::KVCache cache = test::make_cache();
  io::Hdf5Contents contents = test::contents_for(cache, codec::all_codecs().front()->name());
  contents.info.rope_applied = false;
  contents.text = "The quick brown fox";
  io::Hdf5ExportOptions options;
  options.include_text = true;
  io::export_hdf5(dir / "m.h5", contents, options);
  const auto back = io::import_hdf5(dir / "m.h5");
  EXPECT_EQ(back.format_version, io::kHdf5FormatVersion);
  EXPECT_FALSE(back.kvscope_version.empty());
  EXPECT_EQ(back.created_utc.size(), 20u) << back.created_utc;  // 2026-11-28T05:40:00Z
  EXPECT_EQ(back.created_utc.back(), 'Z');
  EXPECT_EQ(back.shape, cache.shape());
  EXPECT_EQ(back.info.model_name, cache.info.model_name);
  EXPECT_EQ(back.info.architecture, "llama");
  EXPECT_EQ(back.info.model_sha256, cache.info.model_sha256);
  EXPECT_FALSE(back.info.rope_applied);
  EXPECT_EQ(back.info.rope_theta, 100000.0);
  EXPECT_EQ(back.info.token_ids, cache.info.token_ids);
  EXPECT_EQ(back.info.positions, cache.info.positions);
  ASSERT_TRUE(back.text.has_value());
  EXPECT_EQ(*back.text, "The quick brown fox");
  EXPECT_FALSE(back.has_reference);
}

TEST(Hdf5RoundTrip, TextIsWrittenOnlyWhenAllowed) {
  TempDir dir("text");
  const kv::KVCache cache = test::make_cache();
  io::Hdf5Contents contents = test::contents_for(cache, codec::all_codecs().front()->name());
  contents.text = "private prompt";
  io::export_hdf5(dir / "t.h5", contents);  // include_text defaults to false
  EXPECT_FALSE(io::import_hdf5(dir / "t.h5").text.has_value());
  const auto bytes = test::read_all(dir / "t.h5");
  const std::string needle = "private prompt";
  EXPECT_EQ(std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end()), bytes.end());
}

TEST(Hdf5RoundTrip, SeveralLevelsAndCalibration) {
  TempDir dir("ladder");
  const kv::KVCache cache = test::make_cache();
  io::Hdf5Contents contents;
  contents.shape = cache.shape();
  contents.info = cache.info;
  for (const codec::Codec* c : codec::all_codecs()) {
    io::Hdf5Level level;
    level.config.codec = c->name();
    level.bitstream = codec::encode(cache, level.config).bytes;
    level.label = "rung " + std::to_string(contents.levels.size());
    contents.levels.push_back(std::move(level));
  }
  contents.calibration = io::Hdf5Calibration{"test-profile", std::string(64, 'b'), {1, 2, 3, 4, 5}};
  io::export_hdf5(dir / "l.h5", contents);
  const auto back = io::import_hdf5(dir / "l.h5");
  ASSERT_EQ(back.levels.size(), contents.levels.size());
  for (std::size_t i = 0; i < back.levels.size(); ++i) {
    EXPECT_EQ(back.levels[i].label, contents.levels[i].label);
    EXPECT_TRUE(test::bit_identical(io::decode_hdf5_level(back, int(i)),
                                    codec::decode(contents.levels[i].bitstream)));
  }
  ASSERT_TRUE(back.calibration.has_value());
  EXPECT_EQ(back.calibration->name, "test-profile");
  EXPECT_EQ(back.calibration->bytes, (std::vector<std::uint8_t>{1, 2, 3, 4, 5}));
  EXPECT_THROW(io::decode_hdf5_level(back, int(back.levels.size())), Error);
}

TEST(Hdf5RoundTrip, CalibrationProfileIsEmbeddedAndUsed) {
  bool have_cachegen = false;
  for (const codec::Codec* c : codec::all_codecs()) have_cachegen |= c->name() == "cachegen";
  if (!have_cachegen) GTEST_SKIP() << "no cachegen codec registered";
  TempDir dir("calib");
  const kv::CacheShape shape{2, 2, 32, 16};
  const std::vector<kv::KVCache> calib = {test::make_cache(shape, 1), test::make_cache(shape, 2)};
  const auto profile = codec::calibration::build_profile(calib, {});
  const auto profile_path = codec::calibration::save_profile(profile, dir / "profiles");
  const kv::KVCache cache = test::make_cache(shape, 3);
  io::Hdf5Contents contents;
  contents.shape = shape;
  contents.info = cache.info;
  io::Hdf5Level level;
  level.config = {"cachegen", {{"profile", profile_path.string()}}};
  level.bitstream = codec::encode(cache, level.config).bytes;
  contents.levels.push_back(level);
  codec::DecodeOptions with_dir;
  with_dir.profile_dir = (dir / "profiles").string();
  const kv::KVCache expected = codec::decode(level.bitstream, with_dir);
  io::export_hdf5(dir / "embedded.h5", contents);
  io::Hdf5ExportOptions no_embed;
  no_embed.embed_calibration = false;
  io::export_hdf5(dir / "bare.h5", contents, no_embed);
  std::filesystem::remove_all(dir / "profiles");  // only the file's copy is left

  const auto back = io::import_hdf5(dir / "embedded.h5");
  ASSERT_TRUE(back.calibration.has_value());
  EXPECT_EQ(back.calibration->bytes, profile);
  EXPECT_EQ(back.calibration->hash, codec::calibration::profile_hash(profile));
  EXPECT_TRUE(test::bit_identical(io::decode_hdf5_level(back), expected));
  // Without the embedded profile the same bitstream cannot be decoded here.
  const auto bare = io::import_hdf5(dir / "bare.h5");
  EXPECT_FALSE(bare.calibration.has_value());
  EXPECT_THROW(io::decode_hdf5_level(bare, 0, with_dir), Error);
}

TEST(Hdf5RoundTrip, CallerSectionsAreKeptAndChecked) {
  TempDir dir("sec");
  const kv::KVCache cache = test::make_cache();
  io::Hdf5Contents contents = test::contents_for(cache, codec::all_codecs().front()->name());
  const auto size = contents.levels[0].bitstream.size();
  ASSERT_GE(size, 4u);
  contents.levels[0].sections = {{0, 3, "header", -1, -1, -1, -1, -1, 0},
                                 {3, size - 3, "chunk", 0, 1, 0, 0, 24, 0}};
  io::export_hdf5(dir / "s.h5", contents);
  const auto back = io::import_hdf5(dir / "s.h5");
  ASSERT_EQ(back.levels[0].sections.size(), 2u);
  EXPECT_EQ(back.levels[0].sections[1].kind, "chunk");
  EXPECT_EQ(back.levels[0].sections[1].token_end, 24);
  EXPECT_EQ(back.levels[0].sections[1].crc32c, crc32c(std::span(contents.levels[0].bitstream).subspan(3)));

  contents.levels[0].sections = {{2, size, "chunk", 0, 1, 0, 0, 24, 0}};  // runs past the end
  EXPECT_THROW(io::export_hdf5(dir / "bad.h5", contents), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.h5"));
}

TEST(Hdf5RoundTrip, ReferenceDataIsFp16AndCompressed) {
  TempDir dir("ref");
  kv::KVCache cache = test::make_cache({2, 2, 300, 16});
  io::Hdf5Contents contents = test::contents_for(cache, codec::all_codecs().front()->name());
  contents.reference = cache;
  io::Hdf5ExportOptions options;
  options.include_reference = true;
  io::export_hdf5(dir / "r.h5", contents, options);
  io::Hdf5ImportOptions in;
  EXPECT_FALSE(io::import_hdf5(dir / "r.h5", in).reference.has_value());  // only on request
  in.load_reference = true;
  const auto back = io::import_hdf5(dir / "r.h5", in);
  EXPECT_TRUE(back.has_reference);
  ASSERT_TRUE(back.reference.has_value());
  EXPECT_TRUE(test::bit_identical(*back.reference, cache));  // cache is already fp16-exact
}

TEST(Hdf5RoundTrip, ProgressReachesOneAndIsMonotonic) {
  TempDir dir("prog");
  const kv::KVCache cache = test::make_cache();
  io::Hdf5Contents contents = test::contents_for(cache, codec::all_codecs().front()->name());
  contents.reference = cache;
  std::vector<double> seen;
  io::Hdf5ExportOptions options;
  options.include_reference = true;
  options.progress = [&](double f, std::string_view) {
    seen.push_back(f);
    return true;
  };
  io::export_hdf5(dir / "p.h5", contents, options);
  ASSERT_GE(seen.size(), 3u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.back(), 1.0);
}

TEST(Hdf5RoundTrip, IsHdf5PathChoosesByExtension) {
  EXPECT_TRUE(io::is_hdf5_path("a/b.h5"));
  EXPECT_TRUE(io::is_hdf5_path("B.HDF5"));
  EXPECT_FALSE(io::is_hdf5_path("b.kvs"));
  EXPECT_FALSE(io::is_hdf5_path("h5"));
}

}  // namespace
}  // namespace kvscope
