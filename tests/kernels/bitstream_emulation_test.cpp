// SPDX-License-Identifier: Apache-2.0
// The GPU decoder of core/codec bitstreams, run on the CPU: its host planning
// plus the kernels' per-stream functions (emulate_gpu_decode_fp16) must give
// exactly round_to_half(codec::decode(bytes)) for every supported codec, and
// reject exactly what the CPU decoder rejects. Needs no GPU.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_cachegen_params.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kernels/gpu_bitstream.h"
#include "kvscope/kernels/quantize.h"
#include "synthetic_cache.h"

namespace kvscope::kernels {
namespace {

using testing::make_cache;
using testing::Pattern;

std::vector<std::uint16_t> cpu_fp16(std::span<const std::uint8_t> bytes) {
  const kv::KVCache c = codec::decode(bytes);
  std::vector<std::uint16_t> out(c.data().size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = float_to_half(c.data()[i]);
  return out;
}

struct Case {
  kv::CacheShape shape;
  codec::CodecConfig config;
};

codec::CodecConfig cachegen(codec::ParamSet params) {
  return {"cachegen", testing::gpu_cachegen_params(std::move(params))};
}

std::vector<Case> cases() {
  std::vector<Case> v;
  // Odd channel counts, last chunks shorter than the rest, groups that do not
  // divide chunks, one-token last chunk, several layer groups; each with the
  // default scale (token) and with scale=head and scale=channel.
  for (const char* scale : {"token", "head", "channel"}) {
    v.push_back({{2, 3, 300, 5}, cachegen({{"chunk_tokens", "128"}, {"scale", scale}})});
    v.push_back({{3, 1, 37, 7}, cachegen({{"chunk_tokens", "16"}, {"group_size", "4"}, {"scale", scale}})});
    v.push_back({{4, 2, 257, 16}, cachegen({{"chunk_tokens", "64"}, {"group_size", "1"}, {"scale", scale}})});
    v.push_back({{6, 2, 129, 32},
                 cachegen({{"chunk_tokens", "128"},
                           {"key_bins", "64,32,16"},
                           {"key_layer_splits", "2,4"},
                           {"scale", scale}})});
    v.push_back({{2, 5, 61, 3}, cachegen({{"chunk_tokens", "20"}, {"group_size", "7"}, {"scale", scale}})});
    // Per-channel mode forced both ways (auto above mixes raw and anchor/delta channels).
    for (const char* delta : {"always", "never", "auto"})
      v.push_back({{2, 2, 100, 6}, cachegen({{"chunk_tokens", "32"}, {"delta", delta}, {"scale", scale}})});
  }
  // The default configuration (no scale given: token).
  v.push_back({{2, 3, 300, 5}, cachegen({{"chunk_tokens", "128"}})});
  for (const char* c : {"int8", "int4", "fp16"}) {
    v.push_back({{2, 3, 99, 5}, {c, {{"chunk_tokens", "32"}}}});
  }
  return v;
}

std::string describe(const Case& c) {
  std::string s = c.config.codec;
  for (const auto& [k, v] : c.config.params) s += " " + k + "=" + v;
  return s + " " + std::to_string(c.shape.layers) + "x" + std::to_string(c.shape.kv_heads) + "x" +
         std::to_string(c.shape.tokens) + "x" + std::to_string(c.shape.head_dim);
}

TEST(BitstreamEmulation, EqualsCpuDecodeForEveryCodecAndShape) {
  for (const auto& c : cases()) {
    for (Pattern p : {Pattern::Realistic, Pattern::Random}) {
      const auto cache = make_cache(c.shape, p, 21, 2);
      const auto bytes = codec::encode(cache, c.config).bytes;
      ASSERT_TRUE(gpu_decode_support(bytes).supported) << describe(c);
      EXPECT_EQ(emulate_gpu_decode_fp16(bytes), cpu_fp16(bytes)) << describe(c);
    }
  }
}

// Rewrites section `i`'s CRC after tampering, as an attacker (or a bug before
// sealing) would, so the decoders' own checks are what is tested.
void reseal(std::vector<std::uint8_t>& bytes, const codec::SectionInfo& s) {
  const std::uint32_t crc =
      crc32c(std::span<const std::uint8_t>(bytes).subspan(s.payload_offset, s.payload_bytes),
             crc32c(std::span<const std::uint8_t>(bytes).subspan(s.offset, 20)));
  std::memcpy(bytes.data() + s.offset + 20, &crc, 4);
}

// Same accept/reject verdict (and error code), and the same values when
// both accept, on one tampered stream of `good`.
void expect_same_verdict(const std::vector<std::uint8_t>& bad, const std::string& what, int& rejected) {
  bool cpu_ok = true, gpu_ok = true;
  ErrorCode cpu_code{}, gpu_code{};
  std::vector<std::uint16_t> a, b;
  try {
    a = cpu_fp16(bad);
  } catch (const Error& e) {
    cpu_ok = false;
    cpu_code = e.code();
  }
  try {
    b = emulate_gpu_decode_fp16(bad);
  } catch (const Error& e) {
    gpu_ok = false;
    gpu_code = e.code();
  }
  ASSERT_EQ(cpu_ok, gpu_ok) << what;
  if (cpu_ok) {
    EXPECT_EQ(a, b) << what;
  } else {
    EXPECT_EQ(cpu_code, gpu_code) << what;
    ++rejected;
  }
}

TEST(BitstreamEmulation, RejectsExactlyWhatTheCpuRejects) {
  const auto cache = make_cache({2, 2, 200, 8}, Pattern::Realistic, 5, 2);
  const std::vector<codec::CodecConfig> configs = {
      cachegen({{"chunk_tokens", "64"}}),  // scale=token
      cachegen({{"chunk_tokens", "64"}, {"scale", "head"}, {"delta", "always"}}),
      cachegen({{"chunk_tokens", "64"}, {"scale", "channel"}}),
      cachegen({{"chunk_tokens", "64"}, {"scale", "token"}, {"delta", "never"}}),
      {"int8", {{"chunk_tokens", "64"}}},
      {"int4", {{"chunk_tokens", "64"}}},
  };
  for (const auto& config : configs) {
    const std::string name = describe({cache.shape(), config});
    const auto good = codec::encode(cache, config).bytes;
    const auto info = codec::inspect_stream(good);
    testing::Rng rng(17);
    int rejected = 0;
    for (int i = 0; i < 300; ++i) {
      std::vector<std::uint8_t> bad = good;
      const auto& s = info.sections[rng.next() % info.sections.size()];
      if (s.payload_bytes == 0) continue;
      bad[s.payload_offset + rng.next() % s.payload_bytes] ^=
          static_cast<std::uint8_t>(1u << (rng.next() % 8));
      if (i % 3 != 0) reseal(bad, s);  // a third keep the stale CRC: both must say Checksum
      expect_same_verdict(bad, name + " mutation " + std::to_string(i), rejected);
    }
    EXPECT_GT(rejected, 100) << name;
  }
}

// Tampering aimed at what version 2 added: the steps of a chunk (per token or
// per head: a changed step changes the prediction of later tokens, which may
// push a delta out of [-M, M]) and the coded streams right after them.
TEST(BitstreamEmulation, TamperedStepsGiveTheCpuVerdict) {
  const auto cache = make_cache({2, 3, 90, 8}, Pattern::Realistic, 8, 2);
  for (const char* scale : {"token", "head", "channel"}) {
    const auto config = cachegen({{"chunk_tokens", "32"}, {"scale", scale}, {"delta", "always"}});
    const auto good = codec::encode(cache, config).bytes;
    const auto info = codec::inspect_stream(good);
    testing::Rng rng(29);
    int rejected = 0, tried = 0;
    for (const auto& s : info.sections) {
      if (s.kind != codec::SectionKind::Chunk) continue;
      const std::size_t steps = 2u * (std::string(scale) == "channel" ? 24u
                                      : std::string(scale) == "token" ? std::size_t(s.token_count)
                                                                      : std::size_t(s.token_count) * 3u);
      for (int i = 0; i < 12; ++i, ++tried) {
        std::vector<std::uint8_t> bad = good;
        const std::size_t at = s.payload_offset + rng.next() % steps;
        // Low bits scale a step a little (decodes, other values), high bits
        // make it huge, infinite or NaN (rejected).
        bad[at] ^= static_cast<std::uint8_t>(1u << (rng.next() % 8));
        reseal(bad, s);
        expect_same_verdict(bad, std::string(scale) + " step byte " + std::to_string(at), rejected);
      }
    }
    EXPECT_GT(tried, 50);
    EXPECT_GT(rejected, 0) << scale;
  }
}

// A version 1 stream (one step per chunk and channel, deltas against Q_anchor)
// written before layout version 2 keeps decoding through the GPU path.
TEST(BitstreamEmulation, DecodesTheVersion1Golden) {
  const auto path = std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/codec/golden/cachegen-v1.kvc";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  const auto info = codec::inspect_stream(bytes);
  ASSERT_EQ(info.codec_version, 1);
  ASSERT_EQ(info.params.count("scale"), 0u);
  ASSERT_TRUE(gpu_decode_support(bytes).supported);
  EXPECT_EQ(emulate_gpu_decode_fp16(bytes), cpu_fp16(bytes));
  // The same cache at scale=channel in version 2 decodes to the same values.
  const auto golden_v2 =
      std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/codec/golden/cachegen-channel.kvc";
  std::ifstream in2(golden_v2, std::ios::binary);
  ASSERT_TRUE(in2) << golden_v2;
  const std::vector<std::uint8_t> v2((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>());
  EXPECT_EQ(emulate_gpu_decode_fp16(v2), emulate_gpu_decode_fp16(bytes));
  // Every golden cachegen stream (token, head + delta=always, channel).
  for (const char* name : {"cachegen.kvc", "cachegen-head-delta.kvc", "cachegen-channel.kvc"}) {
    std::ifstream f(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/codec/golden" / name,
                    std::ios::binary);
    ASSERT_TRUE(f) << name;
    const std::vector<std::uint8_t> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(codec::inspect_stream(b).codec_version, 2) << name;
    EXPECT_EQ(emulate_gpu_decode_fp16(b), cpu_fp16(b)) << name;
  }
}

// Rewrites the header body (and its CRC) with one parameter changed, as a
// hand-made stream would: the version and scale rules are checked, not the CRC.
std::vector<std::uint8_t> with_header_edit(std::vector<std::uint8_t> bytes, std::uint16_t version,
                                           const std::string& scale_value) {
  // Container prefix (docs/bitstream.md 1): magic, u16 format, u16 flags,
  // u32 body length, u32 body CRC; the body starts with the codec name
  // (u16 length + bytes) and the u16 codec layout version.
  std::uint32_t body_len;
  std::memcpy(&body_len, bytes.data() + 8, 4);
  const auto body = bytes.begin() + 16, body_end = body + body_len;
  // The codec name "cachegen" is followed by the u16 codec version.
  const std::string name = "cachegen";
  const auto it = std::search(body, body_end, name.begin(), name.end());
  if (it == body_end) throw std::runtime_error("no codec name");
  const auto vpos = it + static_cast<std::ptrdiff_t>(name.size());
  vpos[0] = static_cast<std::uint8_t>(version & 0xff);
  vpos[1] = static_cast<std::uint8_t>(version >> 8);
  if (!scale_value.empty()) {
    // The scale value is stored as a string after the key "scale"; replace a
    // same-length value only (keeps every length field valid).
    const std::string key = "scale", old = "token";
    const auto k = std::search(vpos, body_end, key.begin(), key.end());
    if (k == body_end) throw std::runtime_error("no scale parameter");
    const auto v = std::search(k + static_cast<std::ptrdiff_t>(key.size()), body_end, old.begin(), old.end());
    if (v == body_end || scale_value.size() != old.size()) throw std::runtime_error("cannot edit scale");
    std::copy(scale_value.begin(), scale_value.end(), v);
  }
  const std::uint32_t crc = crc32c(std::span<const std::uint8_t>(bytes).subspan(16, body_len));
  for (int i = 0; i < 4; ++i)
    bytes[12 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(crc >> (8 * i));
  return bytes;
}

TEST(BitstreamEmulation, VersionAndScaleRulesMatchTheCpu) {
  const auto cache = make_cache({2, 2, 40, 4}, Pattern::Realistic, 3, 2);
  const auto good = codec::encode(cache, cachegen({{"chunk_tokens", "16"}})).bytes;  // scale=token
  ASSERT_EQ(codec::inspect_stream(good).codec_version, 2);
  int rejected = 0;
  // A version 1 stream with a scale parameter, a version this build does not
  // know (6; the CPU decodes up to 5, centroid reconstruction), an unknown
  // scale: the GPU path gives the CPU's verdict and code.
  for (std::uint16_t version : {1, 6, 0}) {
    const auto bad = with_header_edit(good, version, "");
    expect_same_verdict(bad, "version " + std::to_string(version), rejected);
  }
  expect_same_verdict(with_header_edit(good, 2, "tokex"), "scale tokex", rejected);
  EXPECT_EQ(rejected, 4);
  // ... and those codes are the rules' (not a stale CRC).
  auto code_of = [](const std::vector<std::uint8_t>& b) {
    try {
      emulate_gpu_decode_fp16(b);
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::Internal;
  };
  EXPECT_EQ(code_of(with_header_edit(good, 1, "")), ErrorCode::Format);
  EXPECT_EQ(code_of(with_header_edit(good, 5, "")), ErrorCode::Unsupported);
  EXPECT_EQ(code_of(with_header_edit(good, 2, "tokex")), ErrorCode::Format);
  EXPECT_EQ(emulate_gpu_decode_fp16(with_header_edit(good, 2, "")),
            cpu_fp16(good));  // an edit that keeps it valid
  EXPECT_THROW(emulate_gpu_decode_fp16(with_header_edit(good, 1, "")), Error);
  EXPECT_FALSE(gpu_decode_support(with_header_edit(good, 5, "")).supported);  // Unsupported: the CPU decides
}

TEST(BitstreamEmulation, TruncatedStreamsAreErrors) {
  const auto cache = make_cache({1, 2, 50, 4}, Pattern::Realistic, 6, 1);
  const auto good = codec::encode(cache, cachegen({{"chunk_tokens", "16"}})).bytes;
  for (std::size_t cut = 0; cut < good.size(); cut += 7) {
    EXPECT_THROW(emulate_gpu_decode_fp16(std::span<const std::uint8_t>(good).first(cut)), Error) << cut;
  }
}

// The GPU encoder's sections framed by codec::assemble_stream are a complete
// stream, byte for byte the codec's, which the CPU decodes.
TEST(CachegenEncodeEmulation, WholeStreamEqualsTheCodecs) {
  for (const auto& c : cases()) {
    if (c.config.codec != "cachegen") continue;
    const auto cache = make_cache(c.shape, Pattern::Realistic, 43, 2);
    const auto mine = emulate_gpu_encode_cachegen(cache, c.config);
    EXPECT_EQ(mine, codec::encode(cache, c.config).bytes) << describe(c);
    EXPECT_NO_THROW(codec::decode(mine)) << describe(c);
  }
}

// The GPU cachegen encoder's logic, run on the CPU, writes exactly the
// codec's Table and Chunk payloads.
TEST(CachegenEncodeEmulation, SectionPayloadsEqualTheCodecs) {
  for (const auto& c : cases()) {
    if (c.config.codec != "cachegen") continue;
    for (Pattern p : {Pattern::Realistic, Pattern::Random}) {
      const auto cache = make_cache(c.shape, p, 41, 2);
      const auto bytes = codec::encode(cache, c.config).bytes;
      const auto info = codec::inspect_stream(bytes);
      const auto mine = emulate_gpu_encode_cachegen_sections(cache, c.config);
      ASSERT_EQ(mine.size(), info.sections.size());
      for (std::size_t i = 0; i < mine.size(); ++i) {
        const auto& s = info.sections[i];
        ASSERT_TRUE(mine[i].size() == s.payload_bytes &&
                    std::equal(mine[i].begin(), mine[i].end(),
                               bytes.begin() + static_cast<std::ptrdiff_t>(s.payload_offset)))
            << "section " << i << " (" << codec::to_string(s.kind) << " layer " << s.layer << ") of "
            << describe(c);
      }
    }
  }
  EXPECT_THROW(emulate_gpu_encode_cachegen_sections(make_cache({1, 1, 4, 2}, Pattern::Realistic, 1, 1),
                                                    cachegen({{"no_such_param", "1"}})),
               Error);
  // A bad scale and NaN values are the caller's errors, at every scale.
  const auto small = make_cache({1, 2, 6, 2}, Pattern::Realistic, 1, 1);
  try {
    emulate_gpu_encode_cachegen_sections(small, cachegen({{"scale", "row"}}));
    ADD_FAILURE() << "scale=row accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
  }
  kv::KVCache nan = small;
  nan.data()[5] = std::nanf("");
  for (const char* scale : {"token", "head", "channel"}) {
    try {
      emulate_gpu_encode_cachegen_sections(nan, cachegen({{"scale", scale}}));
      ADD_FAILURE() << "NaN accepted at scale " << scale;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    }
  }
}

// Zero steps: tokens (and single heads of tokens) that are all zero get a
// step of 0, so the prediction of a delta token uses a ratio of 0 (token
// step 0) or an anchor whose step is 0. Decode and encode must still be the
// codec's, for every scale.
TEST(CachegenEncodeEmulation, ZeroTokensAndHeadsMatchTheCodec) {
  const kv::CacheShape shape{2, 3, 70, 4};
  kv::KVCache cache = make_cache(shape, Pattern::Realistic, 13, 2);
  for (int lk = 0; lk < shape.layers * 2; ++lk) {
    float* t = cache.data().data() + static_cast<std::size_t>(lk) * shape.tensor_elements();
    for (int h = 0; h < shape.kv_heads; ++h)
      for (int tok = 0; tok < shape.tokens; ++tok)
        if (tok % 7 == 3 || tok % 10 == 0 || (h == 1 && tok % 5 == 2))  // incl. whole groups' anchors
          for (int d = 0; d < shape.head_dim; ++d)
            t[(static_cast<std::size_t>(h) * shape.tokens + tok) * shape.head_dim + d] = 0.0f;
  }
  for (const char* scale : {"token", "head", "channel"}) {
    for (const char* delta : {"always", "auto"}) {
      const auto config = cachegen({{"chunk_tokens", "32"}, {"scale", scale}, {"delta", delta}});
      const auto bytes = codec::encode(cache, config).bytes;
      const auto what = describe({shape, config});
      EXPECT_EQ(emulate_gpu_decode_fp16(bytes), cpu_fp16(bytes)) << what;
      const auto info = codec::inspect_stream(bytes);
      const auto mine = emulate_gpu_encode_cachegen_sections(cache, config);
      ASSERT_EQ(mine.size(), info.sections.size()) << what;
      for (std::size_t i = 0; i < mine.size(); ++i) {
        const auto& s = info.sections[i];
        EXPECT_TRUE(mine[i].size() == s.payload_bytes &&
                    std::equal(mine[i].begin(), mine[i].end(),
                               bytes.begin() + static_cast<std::ptrdiff_t>(s.payload_offset)))
            << what << " section " << i;
      }
    }
  }
}

// The int8/int4 quantizer the GPU runs (its CPU reference, bit-exact with
// the kernels) produces exactly the codec's chunk payloads.
TEST(IntQuantizer, SectionPayloadsEqualTheCodecs) {
  for (const kv::CacheShape shape :
       {kv::CacheShape{2, 3, 99, 5}, kv::CacheShape{1, 1, 7, 3}, kv::CacheShape{2, 8, 70, 16}}) {
    const auto cache = make_cache(shape, Pattern::Realistic, 12, 2);
    for (int bits : {8, 4}) {
      for (int ct : {1, 32, 256}) {
        const auto bytes =
            codec::encode(cache, {bits == 8 ? "int8" : "int4", {{"chunk_tokens", std::to_string(ct)}}}).bytes;
        const auto info = codec::inspect_stream(bytes);
        const auto mine = codec_section_payloads(cpu_quantize(cache, bits), ct);
        ASSERT_EQ(mine.size(), info.sections.size());
        for (std::size_t i = 0; i < mine.size(); ++i) {
          const auto& s = info.sections[i];
          ASSERT_TRUE(std::equal(mine[i].begin(), mine[i].end(), bytes.begin() + s.payload_offset,
                                 bytes.begin() + s.payload_offset + s.payload_bytes) &&
                      mine[i].size() == s.payload_bytes)
              << "int" << bits << " chunk " << ct << " section " << i;
        }
      }
    }
  }
  kv::KVCache bad({1, 1, 2, 2});
  bad.data()[1] = std::nanf("");
  EXPECT_THROW(cpu_quantize(bad, 8), Error);
}

}  // namespace
}  // namespace kvscope::kernels
