// SPDX-License-Identifier: Apache-2.0
// Hostile input to the decoder (issue #18, docs/hostile-input.md): the
// declared size is checked against a cap before anything is allocated, an
// allocation the machine cannot satisfy is a clean error, and payloads are
// consumed exactly (trailing bytes in a coded stream, a zero byte the
// encoder would have trimmed, a second zstd frame are errors).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "byte_io.h"
#include "cachegen_block_avx2.h"
#include "fuzz_replay.h"
#include "kvscope/codec/bitstream.h"
#include "test_util.h"

namespace kvscope::codec {
namespace {

// cachegen's layout version 3 parameters at their version 2 meaning
// (docs/bitstream.md "cachegen"). assemble_stream() resolves a missing
// parameter to today's default, and those defaults are version 3 features
// (sinks, coded steps, 10-bit tables, keys before RoPE) that change the
// payload layout: streams framed here from version 2 payloads name them.
const ParamSet kCachegenV2 = {{"sinks", "0"},          {"delta_mode", "integer"}, {"anchor_bins", "256"},
                              {"step_coding", "fp16"}, {"table_bits", "16"},      {"key_space", "post_rope"}};

// The attack: 2^31 values (16 layers x 1024 channels x 65536 tokens
// x 2 kinds) in ~360 KB. Every channel is raw with a single-symbol model
// (probability 1: zero bits per value), every coded stream is empty.
std::vector<std::uint8_t> two_billion_value_stream() {
  const kv::CacheShape shape{16, 8, 65536, 128};
  const CodecConfig config{"cachegen",
                           {{"chunk_tokens", "65536"},
                            {"scale", "channel"},
                            {"delta", "never"},
                            {"key_bins", "16"},
                            {"key_layer_splits", ""},
                            {"value_bins", "16"},
                            {"value_layer_splits", ""},
                            {"sinks", "0"},
                            {"step_coding", "fp16"},
                            {"table_bits", "16"},
                            {"key_space", "post_rope"}}};
  const int C = shape.channels(), M = 7;
  std::vector<std::uint8_t> table, chunk;
  detail::ByteWriter t(table), c(chunk);
  for (int ch = 0; ch < C; ++ch) {
    t.u8(1);  // raw
    t.varint(std::uint64_t(M));
    t.varint(1);
    t.varint(65536);  // anchor model: the symbol of Q = 0 only
    t.varint(0);
    t.varint(0);  // no delta model
  }
  for (int ch = 0; ch < C; ++ch) c.u16(0x3c00);  // step 1.0 per channel
  for (int ch = 0; ch < C; ++ch) c.varint(0);    // empty streams
  std::vector<std::vector<std::uint8_t>> payloads;
  for (int i = 0; i < shape.layers * 2; ++i) {
    payloads.push_back(table);
    payloads.push_back(chunk);
  }
  const std::uint8_t header[2] = {0, 0};  // range coder, tables in the stream
  return assemble_stream(shape, {}, config, header, true, std::move(payloads));
}

TEST(HostileInput, TwoBillionValuesInAFewHundredKilobytesAreRefusedBeforeAllocating) {
  const auto bytes = two_billion_value_stream();
  EXPECT_LT(bytes.size(), 400u << 10);
  EXPECT_EQ(inspect_stream(bytes).shape.elements(), std::size_t(1) << 31);
  DecodeOptions o;
  o.max_elements = std::size_t(1) << 30;
  ::kvscope::test::reset_heap_peak();
  const std::size_t before = ::kvscope::test::heap_bytes();
  try {
    decode(bytes, o);
    FAIL() << "decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    const std::string m = e.what();
    EXPECT_NE(m.find("2147483648"), std::string::npos) << m;  // what the stream declares
    EXPECT_NE(m.find("1073741824"), std::string::npos) << m;  // the cap
  }
  // Only the section directory was built: nothing near the cache's 8 GiB.
  EXPECT_LT(::kvscope::test::heap_peak_bytes() - before, std::size_t(1) << 20);
  EXPECT_THROW(decode_section(bytes, 1, o), Error);
}

TEST(HostileInput, TheDefaultCapFollowsTheMachinesMemory) {
  const std::uint64_t budget = memory_budget_bytes();
  ASSERT_GT(budget, 0u) << "no memory size readable on this machine";
  EXPECT_EQ(default_max_elements(), std::max<std::uint64_t>(budget / 16, std::uint64_t(1) << 20));
  EXPECT_EQ(DecodeOptions{}.max_elements, default_max_elements());
  // A quarter of memory as float32: the default refuses the 8 GiB attack on
  // any machine with less than 32 GiB.
  if (budget < (std::uint64_t(32) << 30)) {
    EXPECT_THROW(decode(two_billion_value_stream()), Error);
  }
}

#if defined(__SANITIZE_ADDRESS__)
#define KVSCOPE_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVSCOPE_UNDER_ASAN 1
#endif
#endif

// Under a process memory limit the cache allocation fails: that must be an
// Error naming the size, not std::bad_alloc escaping (or a crash).
TEST(HostileInput, AllocationFailureIsACleanError) {
#ifdef KVSCOPE_UNDER_ASAN
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space; RLIMIT_AS cannot be used";
#else
  const auto bytes = two_billion_value_stream();
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
  long pages = 0;
  {
    std::ifstream statm("/proc/self/statm");
    statm >> pages;
  }
  ASSERT_GT(pages, 0);
  rlimit limited = old;
  limited.rlim_cur = rlim_t(pages) * 4096 + (rlim_t(1) << 30);  // what we use now + 1 GiB
  ASSERT_EQ(setrlimit(RLIMIT_AS, &limited), 0);
  DecodeOptions o;
  o.max_elements = std::size_t(1) << 32;  // the cap lets it through; the machine does not
  o.threads = 1;
  bool clean = false;
  std::string message;
  try {
    decode(bytes, o);
  } catch (const Error& e) {
    clean = e.code() == ErrorCode::Unsupported;
    message = e.what();
  } catch (const std::bad_alloc&) {
    message = "std::bad_alloc escaped";
  }
  setrlimit(RLIMIT_AS, &old);
  EXPECT_TRUE(clean) << message;
  EXPECT_NE(message.find("not enough memory"), std::string::npos) << message;
  EXPECT_NE(message.find("2147483648"), std::string::npos) << message;
#endif
}

// The tables' CDFs count against the cap with the cache: 5 bytes of table
// allocate ~2 KB of models.
TEST(HostileInput, SymbolTablesCountAgainstTheCap) {
  const auto cache = synthetic_cache({1, 4, 1, 64}, 3);
  const auto bytes = encode(cache, {"cachegen", {{"key_bins", "256"}, {"value_bins", "256"}}}).bytes;
  DecodeOptions o;
  o.max_elements = 1000000;
  EXPECT_NO_THROW(decode(bytes, o));
  o.max_elements = 2000;  // above the cache's 512 values, below its tables
  try {
    decode(bytes, o);
    FAIL() << "decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find("symbol tables"), std::string::npos) << e.what();
  }
}

// Rebuilds `bytes` with `edit` applied to the payload of chunk section `index`.
std::vector<std::uint8_t> with_chunk_edit(const std::vector<std::uint8_t>& bytes, std::size_t index,
                                          const std::function<void(std::vector<std::uint8_t>&)>& edit) {
  const auto info = inspect_stream(bytes);
  std::vector<std::vector<std::uint8_t>> payloads;
  bool tables = false;
  for (std::size_t i = 0; i < info.sections.size(); ++i) {
    const auto& s = info.sections[i];
    tables |= s.kind == SectionKind::Table;
    payloads.emplace_back(bytes.begin() + std::ptrdiff_t(s.payload_offset),
                          bytes.begin() + std::ptrdiff_t(s.payload_offset + s.payload_bytes));
    if (i == index) edit(payloads.back());
  }
  const auto header = std::span(bytes).subspan(info.codec_header_offset, info.codec_header_bytes);
  ParamSet params = info.params;
  if (info.codec == "cachegen" && info.codec_version < 3)
    params.insert(kCachegenV2.begin(), kCachegenV2.end());
  return assemble_stream(info.shape, info.info, {info.codec, params}, header, tables, std::move(payloads));
}

// In a range-coded chunk (steps, C varint lengths, C streams), appends
// `extra` to the last channel's stream. (Dropping its last byte instead
// usually gives the exact encoding of other symbols: an entropy code has no
// redundancy to notice; the section CRC does.)
void edit_last_stream(std::vector<std::uint8_t>& p, std::size_t steps, int channels, int extra) {
  std::size_t pos = steps * 2;
  std::size_t last = 0;
  for (int c = 0; c < channels; ++c) {
    last = pos;
    ASSERT_LT(p[pos], 0x7f) << "test assumes one-byte lengths";
    ++pos;
  }
  ++p[last];
  p.push_back(std::uint8_t(extra));
}

std::string decode_error(const std::vector<std::uint8_t>& bytes) {
  try {
    decode(bytes);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Format) << e.what();
    return e.what();
  }
  return "decoded";
}

// What each edit must be reported as: an appended byte is read as part of
// the final window (the encoder trimmed zeros there) or left unread.
bool reported(const std::string& m, int extra) {
  auto has = [&](const char* s) { return m.find(s) != std::string::npos; };
  if (extra == 0) return has("ends with a 0 byte");
  return has("has trailing bytes") || has("does not end as the encoder ends it");
}

// Regression (issue #18): bytes appended to a coded stream decoded (the
// decoder reads zeros past the end by design) with the change ignored.
TEST(HostileInput, ACodedStreamMustEndExactlyAsTheEncoderEndsIt) {
  const auto cache = synthetic_cache({1, 1, 12, 16}, 9);
  int checked = 0;
  for (bool simd : {false, true}) {
    detail::cachegen::set_simd_decode(simd);
    for (const char* scale : {"token", "channel"}) {
      // Layout version 2 chunks (no sinks, f16 steps): steps, lengths, streams.
      const auto valid = encode(cache, {"cachegen",
                                        {{"scale", scale},
                                         {"chunk_tokens", "12"},
                                         {"sinks", "0"},
                                         {"step_coding", "fp16"},
                                         {"key_space", "post_rope"},
                                         {"table_bits", "16"}}})
                             .bytes;
      ASSERT_NO_THROW(decode(valid));
      const std::size_t steps = std::string(scale) == "token" ? 12 : 16;
      for (int extra : {0x5a, 0x01, 0}) {
        const auto bad = with_chunk_edit(valid, 1, [&](auto& p) { edit_last_stream(p, steps, 16, extra); });
        const std::string m = decode_error(bad);
        EXPECT_TRUE(reported(m, extra))
            << "simd " << simd << " scale " << scale << " edit " << extra << ": " << m;
        ++checked;
      }
    }
  }
  detail::cachegen::set_simd_decode(true);
  const auto lm = encode(cache, {"cachegen-lmcache", {{"chunk_tokens", "12"}}}).bytes;
  for (int extra : {0x5a, 0x01, 0}) {
    const auto bad = with_chunk_edit(lm, 1, [&](auto& p) { edit_last_stream(p, 12, 16, extra); });
    const std::string m = decode_error(bad);
    EXPECT_TRUE(reported(m, extra)) << "edit " << extra << ": " << m;
    ++checked;
  }
  EXPECT_EQ(checked, 15);
}

// Regression (issue #18): the end rule of docs/bitstream.md section 2 holds for
// every range-coded stream, not only cachegen's integer-delta streams:
// cachegen's float-delta streams (layout version 3) and the transform codec's
// coefficient stream (which had no end check: appended bytes decoded).
TEST(HostileInput, FloatDeltaAndTransformStreamsMustEndExactly) {
  const auto cache = synthetic_cache({1, 1, 12, 16}, 9);
  int checked = 0;
  const auto fl = encode(cache, {"cachegen",
                                 {{"delta_mode", "float"},
                                  {"scale", "token"},
                                  {"sinks", "0"},
                                  {"step_coding", "fp16"},
                                  {"chunk_tokens", "12"}}})
                      .bytes;
  ASSERT_NO_THROW(decode(fl));
  ASSERT_EQ(inspect_stream(fl).codec_version, 3);
  for (int extra : {0x5a, 0x01, 0}) {
    const auto bad = with_chunk_edit(fl, 1, [&](auto& p) { edit_last_stream(p, 12, 16, extra); });
    const std::string m = decode_error(bad);
    EXPECT_TRUE(reported(m, extra)) << "float deltas, edit " << extra << ": " << m;
    ++checked;
  }
  for (const char* grouping : {"layer", "head"}) {
    const auto tf = encode(cache, {"transform", {{"chunk_tokens", "12"}, {"grouping", grouping}}}).bytes;
    ASSERT_NO_THROW(decode(tf));
    for (int extra : {0x5a, 0x01, 0}) {
      // The coefficient stream is the rest of the chunk payload.
      const auto bad = with_chunk_edit(tf, 1, [&](auto& p) { p.push_back(std::uint8_t(extra)); });
      const std::string m = decode_error(bad);
      EXPECT_TRUE(reported(m, extra)) << "transform " << grouping << ", edit " << extra << ": " << m;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 9);
}

// Regression (issue #18): cachegen's coded steps (step_coding=coded) are a
// range-coded stream inside the chunk; a byte appended to it must be an error.
TEST(HostileInput, CodedStepsMustEndExactly) {
  const auto cache = synthetic_cache({1, 1, 64, 16}, 5);
  const auto valid =
      encode(cache, {"cachegen",
                     {{"step_coding", "coded"}, {"scale", "token"}, {"sinks", "0"}, {"chunk_tokens", "64"}}})
          .bytes;
  ASSERT_NO_THROW(decode(valid));
  int checked = 0;
  for (int extra : {0x5a, 0x01, 0}) {
    const auto bad = with_chunk_edit(valid, 1, [&](std::vector<std::uint8_t>& p) {
      // u8 method (1 = coded), u16 first step, the bucket model (varint
      // first, varint m, m varints), varint B, B stream bytes, ...
      ASSERT_EQ(p[0], 1) << "the encoder chose plain steps; the test needs coded ones";
      std::size_t pos = 3;
      auto varint = [&] {
        std::uint64_t v = 0;
        for (int shift = 0;; shift += 7) {
          const std::uint8_t b = p[pos++];
          v |= std::uint64_t(b & 0x7f) << shift;
          if (!(b & 0x80)) return v;
        }
      };
      varint();
      const std::uint64_t m = varint();
      for (std::uint64_t i = 0; i < m; ++i) varint();
      const std::size_t length_at = pos;
      const std::uint64_t B = varint();
      ASSERT_LT(B, 0x7fu) << "test assumes a one-byte length";
      ++p[length_at];
      p.insert(p.begin() + std::ptrdiff_t(pos + B), std::uint8_t(extra));
    });
    const std::string m = decode_error(bad);
    EXPECT_TRUE(reported(m, extra)) << "coded steps, edit " << extra << ": " << m;
    EXPECT_NE(m.find("coded steps"), std::string::npos) << m;
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

// Regression (issue #18): a cachegen chunk whose tokens are all sinks codes
// no symbol, and its streams were not checked at all: bytes put into them
// decoded, ignored. A stream of no symbols is zero bytes (section 2).
TEST(HostileInput, StreamsOfAChunkOfSinksOnlyMustBeEmpty) {
  const auto cache = synthetic_cache({1, 1, 12, 16}, 3);
  const auto valid =
      encode(cache, {"cachegen",
                     {{"sinks", "6"}, {"step_coding", "fp16"}, {"scale", "token"}, {"chunk_tokens", "6"}}})
          .bytes;
  ASSERT_NO_THROW(decode(valid));
  // Chunk section 1 is the first key chunk: 6 sink tokens x 16 f16 values,
  // no steps, 16 zero lengths.
  const auto bad = with_chunk_edit(valid, 1, [&](auto& p) {
    ASSERT_EQ(p.size(), std::size_t(6 * 16 * 2 + 16));
    p[6 * 16 * 2 + 15] = 1;
    p.push_back(0x5a);
  });
  EXPECT_NE(decode_error(bad).find("without quantized tokens"), std::string::npos) << decode_error(bad);
}

// Empty coded streams are exact where the model gives the symbol probability
// 1 (an all-zero cache: every model has one symbol) and decode.
TEST(HostileInput, EmptyCodedStreamsOfSingleSymbolModelsDecode) {
  kv::KVCache zero({2, 2, 20, 8});
  for (const char* codec : {"cachegen", "cachegen-lmcache"}) {
    ParamSet params = {{"chunk_tokens", "7"}};
    if (std::string(codec) == "cachegen") params.insert({{"sinks", "0"}, {"step_coding", "fp16"}});
    const auto bytes = encode(zero, {codec, params}).bytes;
    const auto info = inspect_stream(bytes);
    for (const auto& s : info.sections)
      if (s.kind == SectionKind::Chunk) {
        // token_count steps (scale=token), then 16 zero lengths: no coded bytes
        EXPECT_EQ(s.payload_bytes, std::size_t(s.token_count) * 2 + 16) << codec;
      }
    const auto back = decode(bytes);
    for (float v : back.data()) ASSERT_EQ(v, 0.0f);
  }
}

TEST(HostileInput, AZstdChunkMustBeExactlyOneFrame) {
  bool have = false;
  for (const auto* c : all_codecs()) have |= c->name() == "zstd";
  if (!have) GTEST_SKIP() << "this build has no zstd codec";
  const auto cache = synthetic_cache({1, 1, 8, 8}, 4);
  const auto valid = encode(cache, {"zstd", {{"chunk_tokens", "8"}}}).bytes;
  const auto info = inspect_stream(valid);
  const auto& s = info.sections[0];
  const std::vector<std::uint8_t> frame(valid.begin() + std::ptrdiff_t(s.payload_offset + 16),
                                        valid.begin() + std::ptrdiff_t(s.payload_offset + s.payload_bytes));
  const auto twice =
      with_chunk_edit(valid, 0, [&](auto& p) { p.insert(p.end(), frame.begin(), frame.end()); });
  EXPECT_NE(decode_error(twice).find("exactly one zstd frame"), std::string::npos);
  const auto garbage = with_chunk_edit(valid, 0, [&](auto& p) { p.push_back(7); });
  EXPECT_NE(decode_error(garbage), "decoded");
}

// Regression (found by tests/bitstream_py's corpus): prepare() located the
// codec header from the end of the header body, so a stream with the
// extended cache info (flag bit 0, after the section count) and a codec
// header (cachegen) failed to decode ("6 sections, expected 4").
TEST(HostileInput, ACodecHeaderIsFoundWhenExtendedCacheInfoFollows) {
  auto cache = synthetic_cache({2, 1, 30, 4}, 21);
  cache.info.rope_inv_freq.assign(2, std::vector<double>{1.0, 0.01});
  cache.info.layer_window = {0, 128};
  for (const char* codec : {"cachegen", "cachegen-lmcache", "int8"}) {
    const auto bytes = encode(cache, {codec, {{"chunk_tokens", "23"}}}).bytes;
    const auto info = inspect_stream(bytes);
    EXPECT_EQ(info.info.layer_window, cache.info.layer_window) << codec;
    kv::KVCache back;
    ASSERT_NO_THROW(back = decode(bytes)) << codec;
    EXPECT_EQ(back.info.rope_inv_freq, cache.info.rope_inv_freq) << codec;
  }
}

}  // namespace
}  // namespace kvscope::codec
