// The GPU decoder of core/codec bitstreams, run on the CPU: its host planning
// plus the kernels' per-stream functions (emulate_gpu_decode_fp16) must give
// exactly round_to_half(codec::decode(bytes)) for every supported codec, and
// reject exactly what the CPU decoder rejects. Needs no GPU.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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

std::vector<Case> cases() {
  std::vector<Case> v;
  // Odd channel counts, last chunks shorter than the rest, groups that do not
  // divide chunks, one-token last chunk, several layer groups.
  v.push_back({{2, 3, 300, 5}, {"cachegen", {{"chunk_tokens", "128"}}}});
  v.push_back({{3, 1, 37, 7}, {"cachegen", {{"chunk_tokens", "16"}, {"group_size", "4"}}}});
  v.push_back({{4, 2, 257, 16}, {"cachegen", {{"chunk_tokens", "64"}, {"group_size", "1"}}}});
  v.push_back({{6, 2, 129, 32}, {"cachegen", {{"chunk_tokens", "128"}, {"key_bins", "64,32,16"}}}});
  // Per-channel mode forced both ways (auto above mixes raw and anchor/delta channels).
  v.push_back({{2, 2, 100, 6}, {"cachegen", {{"chunk_tokens", "32"}, {"delta", "always"}}}});
  v.push_back({{2, 2, 100, 6}, {"cachegen", {{"chunk_tokens", "32"}, {"delta", "never"}}}});
  for (const char* c : {"int8", "int4", "fp16"}) {
    v.push_back({{2, 3, 99, 5}, {c, {{"chunk_tokens", "32"}}}});
  }
  return v;
}

TEST(BitstreamEmulation, EqualsCpuDecodeForEveryCodecAndShape) {
  for (const auto& c : cases()) {
    for (Pattern p : {Pattern::Realistic, Pattern::Random}) {
      const auto cache = make_cache(c.shape, p, 21, 2);
      const auto bytes = codec::encode(cache, c.config).bytes;
      ASSERT_TRUE(gpu_can_decode(bytes)) << c.config.codec;
      EXPECT_EQ(emulate_gpu_decode_fp16(bytes), cpu_fp16(bytes))
          << c.config.codec << " " << c.shape.layers << "x" << c.shape.kv_heads << "x" << c.shape.tokens
          << "x" << c.shape.head_dim;
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

TEST(BitstreamEmulation, RejectsExactlyWhatTheCpuRejects) {
  const auto cache = make_cache({2, 2, 200, 8}, Pattern::Realistic, 5, 2);
  for (const char* name : {"cachegen", "int8", "int4"}) {
    const auto good = codec::encode(cache, {name, {{"chunk_tokens", "64"}}}).bytes;
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
      ASSERT_EQ(cpu_ok, gpu_ok) << name << " mutation " << i;
      if (cpu_ok) {
        EXPECT_EQ(a, b) << name << " mutation " << i;
      } else {
        EXPECT_EQ(cpu_code, gpu_code) << name << " mutation " << i;
        ++rejected;
      }
    }
    EXPECT_GT(rejected, 100) << name;
  }
}

TEST(BitstreamEmulation, TruncatedStreamsAreErrors) {
  const auto cache = make_cache({1, 2, 50, 4}, Pattern::Realistic, 6, 1);
  const auto good = codec::encode(cache, {"cachegen", {{"chunk_tokens", "16"}}}).bytes;
  for (std::size_t cut = 0; cut < good.size(); cut += 7) {
    EXPECT_THROW(emulate_gpu_decode_fp16(std::span<const std::uint8_t>(good).first(cut)), Error) << cut;
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
            << c.shape.layers << "x" << c.shape.kv_heads << "x" << c.shape.tokens << "x" << c.shape.head_dim;
      }
    }
  }
  EXPECT_THROW(emulate_gpu_encode_cachegen_sections(make_cache({1, 1, 4, 2}, Pattern::Realistic, 1, 1),
                                                    {"cachegen", {{"no_such_param", "1"}}}),
               Error);
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
