// SPDX-License-Identifier: Apache-2.0
// What the GPU path implements, and the reason it gives for what it does not:
// a stream or configuration the kernels do not know (another codec, a
// parameter added to cachegen since, another table mode) must be decoded or
// encoded on the CPU, never guessed at on the GPU. Needs no GPU.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
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
#include "synthetic_cache.h"

namespace kvscope::kernels {
namespace {

using testing::make_cache;
using testing::Pattern;

// Replaces the first `from` in the header body by `to` (same length, so every
// length field stays valid) and reseals the header CRC: a hand-made stream.
std::vector<std::uint8_t> edit_header(std::vector<std::uint8_t> bytes, const std::string& from,
                                      const std::string& to) {
  if (from.size() != to.size()) throw std::invalid_argument("edit_header: lengths differ");
  std::uint32_t body_len;
  std::memcpy(&body_len, bytes.data() + 8, 4);  // docs/bitstream.md 1: u32 header body length at 8
  const auto body = bytes.begin() + 16, body_end = body + body_len;
  const auto at = std::search(body, body_end, from.begin(), from.end());
  if (at == body_end) throw std::invalid_argument("edit_header: '" + from + "' not in the header");
  std::copy(to.begin(), to.end(), at);
  const std::uint32_t crc = crc32c(std::span<const std::uint8_t>(bytes).subspan(16, body_len));
  std::memcpy(bytes.data() + 12, &crc, 4);
  return bytes;
}

TEST(GpuDecodeSupport, CachegenInt8Int4Fp16AreSupported) {
  const auto cache = make_cache({2, 2, 50, 4}, Pattern::Realistic, 1, 1);
  for (const char* name : {"cachegen", "int8", "int4", "fp16"}) {
    const codec::ParamSet params =
        std::string(name) == "cachegen" ? testing::gpu_cachegen_params() : codec::ParamSet{};
    const GpuSupport s = gpu_decode_support(codec::encode(cache, {name, params}).bytes);
    EXPECT_TRUE(s.supported) << name << ": " << s.reason;
    EXPECT_EQ(s.reason, "") << name;
  }
}

// Regression (issue #14's new defaults made every default cachegen stream
// layout version 3, now 5): the GPU path refuses what it does not implement with a
// reason, and decode_auto decodes it on the CPU and says why.
TEST(GpuDecodeSupport, DefaultCachegenStreamsFallBackToTheCpuWithAReason) {
  const auto cache = make_cache({2, 2, 50, 4}, Pattern::Realistic, 1, 1);
  const auto bytes = codec::encode(cache, {"cachegen", {}}).bytes;
  const GpuSupport s = gpu_decode_support(bytes);
  EXPECT_FALSE(s.supported);
  EXPECT_NE(s.reason.find("version 5"), std::string::npos) << s.reason;
  const AutoDecodeResult r = decode_auto(bytes);
  EXPECT_EQ(r.backend, "cpu");
  EXPECT_FALSE(r.fallback_reason.empty());
  EXPECT_EQ(r.cache.data().size(), codec::decode(bytes).data().size());
}

TEST(GpuDecodeSupport, OtherCodecsAreRefusedWithTheirName) {
  const auto cache = make_cache({2, 2, 50, 4}, Pattern::Realistic, 1, 1);
  for (const char* name : {"kivi2", "cachegen-lmcache", "zstd"}) {
    const GpuSupport s = gpu_decode_support(codec::encode(cache, {name, {}}).bytes);
    EXPECT_FALSE(s.supported) << name;
    EXPECT_EQ(s.reason, "codec '" + std::string(name) + "' has no GPU decoder");
  }
}

// A cachegen parameter the kernels do not implement (here a hand-made one:
// "delta" renamed) is not decoded on the GPU, whatever its value; the CPU
// decides (and rejects this one, as it does not know it either).
TEST(GpuDecodeSupport, UnknownParameterFallsBackToTheCpu) {
  const auto cache = make_cache({2, 2, 50, 4}, Pattern::Realistic, 1, 1);
  const auto good =
      codec::encode(cache, {"cachegen", testing::gpu_cachegen_params({{"chunk_tokens", "16"}})}).bytes;
  const auto bad = edit_header(good, "delta", "delty");
  const GpuSupport s = gpu_decode_support(bad);
  EXPECT_FALSE(s.supported);
  EXPECT_EQ(s.reason, "cachegen parameter 'delty' has no GPU kernel (the CPU handles it)");
  try {
    emulate_gpu_decode_fp16(bad);
    ADD_FAILURE() << "the GPU path decoded a stream with an unknown parameter";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
  }
  EXPECT_NO_THROW(decode_auto(good));
  EXPECT_THROW(decode_auto(bad), Error);  // the CPU's verdict
}

// A header that does not parse is unsupported with the parser's message,
// without throwing; the CPU decoder reports the error itself.
TEST(GpuDecodeSupport, MalformedHeaderIsAReasonNotAnException) {
  const auto cache = make_cache({1, 1, 20, 4}, Pattern::Realistic, 1, 1);
  auto bytes = codec::encode(cache, {"cachegen", {}}).bytes;
  bytes[0] ^= 0xff;  // magic
  GpuSupport s;
  EXPECT_NO_THROW(s = gpu_decode_support(bytes));
  EXPECT_FALSE(s.supported);
  EXPECT_NE(s.reason.find("does not parse"), std::string::npos) << s.reason;
  EXPECT_NO_THROW(s = gpu_decode_support({}));
  EXPECT_FALSE(s.supported);
}

// A cache with per-layer RoPE tables and windows carries extended info
// before the codec header; the GPU path finds the codec header where
// inspect_stream read it and decodes as the CPU does (cachegen at the
// layout version 2 settings the kernels implement).
TEST(GpuDecodeSupport, StreamsWithExtendedCacheInfoDecode) {
  kv::KVCache cache = make_cache({3, 2, 40, 8}, Pattern::Realistic, 4, 1);
  cache.info.rope_inv_freq.assign(3, std::vector<double>(4, 0.25));
  cache.info.layer_window = {0, 0xABCDEF, 5};  // the body ends AB 00, then 05 00 00 00
  for (const char* name : {"cachegen", "int8"}) {
    const codec::ParamSet params = std::string(name) == "cachegen"
                                       ? testing::gpu_cachegen_params({{"chunk_tokens", "16"}})
                                       : codec::ParamSet{{"chunk_tokens", "16"}};
    const auto bytes = codec::encode(cache, {name, params}).bytes;
    ASSERT_EQ(bytes[6], codec::kFlagExtendedInfo) << name;
    ASSERT_TRUE(gpu_decode_support(bytes).supported) << name << ": " << gpu_decode_support(bytes).reason;
    const kv::KVCache cpu = codec::decode(bytes);
    std::vector<std::uint16_t> expected(cpu.data().size());
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = float_to_half(cpu.data()[i]);
    EXPECT_EQ(emulate_gpu_decode_fp16(bytes), expected) << name;
  }
}

TEST(GpuEncodeSupport, CachegenWithShippedTablesOnly) {
  const kv::CacheShape shape{4, 2, 100, 8};
  EXPECT_TRUE(gpu_encode_support(shape, {"cachegen", testing::gpu_cachegen_params()}).supported);
  EXPECT_TRUE(gpu_encode_support(
                  shape, {"cachegen", testing::gpu_cachegen_params({{"scale", "head"}, {"delta", "always"}})})
                  .supported);
  const GpuSupport other = gpu_encode_support(shape, {"int8", {}});
  EXPECT_FALSE(other.supported);
  EXPECT_EQ(other.reason, "codec 'int8' has no GPU cachegen encoder");
  const GpuSupport unknown =
      gpu_encode_support(shape, {"cachegen", testing::gpu_cachegen_params({{"no_such_param", "1"}})});
  EXPECT_FALSE(unknown.supported);
  EXPECT_NE(unknown.reason.find("no_such_param"), std::string::npos) << unknown.reason;
  const GpuSupport bad =
      gpu_encode_support(shape, {"cachegen", testing::gpu_cachegen_params({{"scale", "tokex"}})});
  EXPECT_FALSE(bad.supported);
  EXPECT_NE(bad.reason.find("scale"), std::string::npos) << bad.reason;
  // The encoder itself refuses with the same reason.
  try {
    emulate_gpu_encode_cachegen(make_cache(shape, Pattern::Realistic, 2, 1), {"int8", {}});
    ADD_FAILURE() << "int8 encoded by the cachegen encoder";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find(other.reason), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvscope::kernels
