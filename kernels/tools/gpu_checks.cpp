// SPDX-License-Identifier: Apache-2.0
#include "gpu_checks.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kernels/device.h"
#include "kvscope/kernels/gpu_bitstream.h"
#include "kvscope/kernels/quantize.h"
#include "synthetic_cache.h"

namespace kvscope::kernels::checks {
namespace {

using testing::make_cache;
using testing::Pattern;

template <class F>
bool throws_code(F&& f, ErrorCode code) {
  try {
    f();
  } catch (const Error& e) {
    return e.code() == code;
  }
  return false;
}

std::string describe(const kv::CacheShape& s) {
  std::ostringstream o;
  o << s.layers << "x" << s.kv_heads << "x" << s.tokens << "x" << s.head_dim;
  return o.str();
}

std::string describe(const kv::CacheShape& s, Pattern p) {
  return describe(s) + (p == Pattern::Random ? " random" : " realistic");
}

bool same_bits(const kv::KVCache& a, const kv::KVCache& b) {
  return a.shape() == b.shape() && std::memcmp(a.data().data(), b.data().data(), a.data().size_bytes()) == 0;
}

// Odd channel counts, token counts that leave short last chunks (down to 1
// token), Mistral-like heads.
const kv::CacheShape kQuantizeShapes[] = {
    {2, 3, 300, 5}, {3, 1, 37, 7}, {2, 8, 1000, 128}, {1, 3, 513, 64}, {2, 1, 9, 3},
};

std::string quantize_equals_cpu() {
  for (const auto& shape : kQuantizeShapes) {
    const auto cache = make_cache(shape, Pattern::Realistic, 11);
    for (int bits : {8, 4}) {
      const QuantizedCache cpu = cpu_quantize(cache, bits);
      const QuantizedCache gpu = gpu_quantize(cache, bits);
      const std::string where =
          " differ for int" + std::to_string(bits) + " " + describe(shape, Pattern::Realistic);
      if (gpu.values != cpu.values) return "quantized values" + where;
      if (gpu.scales != cpu.scales) return "scales" + where;
      if (!same_bits(gpu_dequantize(cpu), cpu_dequantize(cpu))) return "dequantized values" + where;
      // And the codec's own bytes for int8/int4 chunks.
      const auto bytes = codec::encode(cache, {bits == 8 ? "int8" : "int4", {{"chunk_tokens", "64"}}}).bytes;
      const auto info = codec::inspect_stream(bytes);
      const auto mine = codec_section_payloads(gpu, 64);
      if (mine.size() != info.sections.size()) return "section count" + where;
      for (std::size_t i = 0; i < mine.size(); ++i) {
        const auto& s = info.sections[i];
        if (mine[i].size() != s.payload_bytes ||
            !std::equal(mine[i].begin(), mine[i].end(),
                        bytes.begin() + static_cast<std::ptrdiff_t>(s.payload_offset)))
          return "codec section payload " + std::to_string(i) + where;
      }
    }
  }
  return "";
}

// ---- core/codec bitstreams ------------------------------------------------

struct BitstreamCase {
  kv::CacheShape shape;
  codec::CodecConfig config;
};

std::vector<BitstreamCase> bitstream_cases() {
  std::vector<BitstreamCase> v;
  // cachegen at every step scale (token is the default), with odd channel
  // counts, short last chunks, group size 1, Mistral heads, forced delta modes.
  for (const char* scale : {"token", "head", "channel"}) {
    auto cg = [&](codec::ParamSet p) {
      p["scale"] = scale;
      return codec::CodecConfig{"cachegen", std::move(p)};
    };
    v.push_back({{2, 3, 300, 5}, cg({{"chunk_tokens", "128"}})});  // odd channels, last chunk 44
    v.push_back({{3, 1, 37, 7}, cg({{"chunk_tokens", "16"}, {"group_size", "4"}})});
    v.push_back({{4, 2, 257, 16}, cg({{"chunk_tokens", "64"}, {"group_size", "1"}})});  // last chunk 1 token
    v.push_back({{4, 8, 1000, 128}, cg({{"chunk_tokens", "256"}})});  // Mistral heads, last chunk 232
    v.push_back({{2, 2, 100, 6}, cg({{"chunk_tokens", "32"}, {"delta", "always"}})});
    v.push_back({{2, 2, 100, 6}, cg({{"chunk_tokens", "32"}, {"delta", "never"}})});
  }
  v.push_back({{2, 3, 99, 5}, {"int8", {{"chunk_tokens", "32"}}}});
  v.push_back({{2, 3, 99, 5}, {"int4", {{"chunk_tokens", "32"}}}});
  v.push_back({{2, 3, 99, 5}, {"fp16", {{"chunk_tokens", "32"}}}});
  return v;
}

std::string describe(const BitstreamCase& c, Pattern p) {
  std::string s = c.config.codec;
  for (const auto& [k, v] : c.config.params) s += " " + k + "=" + v;
  return s + " " + describe(c.shape, p);
}

std::vector<std::uint16_t> cpu_fp16(std::span<const std::uint8_t> bytes) {
  const kv::KVCache c = codec::decode(bytes);
  std::vector<std::uint16_t> out(c.data().size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = float_to_half(c.data()[i]);
  return out;
}

std::vector<std::uint16_t> streamed(std::span<const std::uint8_t> bytes, int lanes, std::size_t batch) {
  const auto info = codec::inspect_stream(bytes);
  const auto header_end = info.header_bytes - 4;
  GpuSectionDecoder dec(info, bytes.subspan(header_end - info.codec_header_bytes, info.codec_header_bytes),
                        lanes, batch);
  for (std::size_t i = 0; i < info.sections.size(); ++i) {
    const auto& s = info.sections[i];
    dec.push_section(i, bytes.subspan(s.offset, s.header_bytes + s.payload_bytes));
  }
  dec.finish();
  return dec.output().download();
}

std::string bitstream_decode_equals_cpu() {
  for (const auto& c : bitstream_cases()) {
    for (Pattern p : {Pattern::Realistic, Pattern::Random}) {
      const auto bytes = codec::encode(make_cache(c.shape, p, 31), c.config).bytes;
      const std::string where = " for " + describe(c, p);
      const auto cpu = cpu_fp16(bytes);
      DeviceHalfBuffer out;
      gpu_decode_bitstream(bytes, out);
      if (out.download() != cpu) return "gpu_decode_bitstream != round_to_half(codec::decode)" + where;
      if (streamed(bytes, 3, 4096) != cpu) return "section streaming (small batches) != CPU" + where;
      if (streamed(bytes, 1, 1) != cpu)
        return "section streaming (one lane, batch per section) != CPU" + where;
    }
  }
  return "";
}

std::string cachegen_encode_equals_cpu() {
  for (const auto& c : bitstream_cases()) {
    if (c.config.codec != "cachegen") continue;
    for (Pattern p : {Pattern::Realistic, Pattern::Random}) {
      const auto cache = make_cache(c.shape, p, 41);
      const auto bytes = codec::encode(cache, c.config).bytes;
      const auto info = codec::inspect_stream(bytes);
      const auto gpu = gpu_encode_cachegen_sections(cache, c.config);
      const std::string where = " for " + describe(c, p);
      if (gpu.size() != info.sections.size()) return "section count differs" + where;
      for (std::size_t i = 0; i < gpu.size(); ++i) {
        const auto& s = info.sections[i];
        if (gpu[i].size() != s.payload_bytes ||
            !std::equal(gpu[i].begin(), gpu[i].end(),
                        bytes.begin() + static_cast<std::ptrdiff_t>(s.payload_offset)))
          return "section " + std::to_string(i) + " payload differs from codec::encode" + where;
      }
      if (gpu_encode_cachegen(cache, c.config) != bytes)
        return "the framed GPU stream differs from codec::encode" + where;
    }
  }
  return "";
}

// The committed golden streams (tests/codec/golden): a cachegen layout
// version 1 stream (one step per chunk and channel) and version 2 streams at
// scale token, head (delta=always) and channel, decoded on the GPU.
std::string golden_bitstreams_decode() {
  const std::string dir = KVSCOPE_GOLDEN_DIR;
  for (const char* name : {"cachegen-v1.kvc", "cachegen.kvc", "cachegen-head-delta.kvc",
                           "cachegen-channel.kvc", "int8.kvc", "int4.kvc", "fp16.kvc"}) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    if (!in) return std::string("cannot read ") + dir + "/" + name;
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                          std::istreambuf_iterator<char>());
    DeviceHalfBuffer out;
    gpu_decode_bitstream(bytes, out);
    if (out.download() != cpu_fp16(bytes)) return std::string("golden ") + name + ": GPU != CPU";
  }
  return "";
}

std::string bitstream_corruption_detected() {
  const auto cache = make_cache({2, 2, 200, 8}, Pattern::Realistic, 5);
  const std::pair<const char*, const char*> configs[] = {
      {"cachegen", "token"}, {"cachegen", "head"}, {"cachegen", "channel"}, {"int8", ""}, {"int4", ""}};
  for (const auto& [codec_name, scale] : configs) {
    codec::CodecConfig config{codec_name, {{"chunk_tokens", "64"}}};
    if (*scale) config.params["scale"] = scale;
    const std::string name = std::string(codec_name) + (*scale ? std::string(" scale=") + scale : "");
    const auto good = codec::encode(cache, config).bytes;
    const auto info = codec::inspect_stream(good);
    testing::Rng rng(23);
    for (int i = 0; i < 120; ++i) {
      std::vector<std::uint8_t> bad = good;
      const auto& s = info.sections[rng.next() % info.sections.size()];
      if (s.payload_bytes == 0) continue;
      bad[s.payload_offset + rng.next() % s.payload_bytes] ^=
          static_cast<std::uint8_t>(1u << (rng.next() % 8));
      if (i % 3 != 0) {  // reseal, so the decoders' own checks are tested
        const std::span<const std::uint8_t> b(bad);
        const std::uint32_t crc =
            crc32c(b.subspan(s.payload_offset, s.payload_bytes), crc32c(b.subspan(s.offset, 20)));
        std::memcpy(bad.data() + s.offset + 20, &crc, 4);
      }
      bool cpu_ok = true, gpu_ok = true;
      std::vector<std::uint16_t> a, g;
      try {
        a = cpu_fp16(bad);
      } catch (const Error&) {
        cpu_ok = false;
      }
      try {
        DeviceHalfBuffer out;
        gpu_decode_bitstream(bad, out);
        g = out.download();
      } catch (const Error&) {
        gpu_ok = false;
      }
      if (cpu_ok != gpu_ok) return name + ": GPU and CPU disagree on mutation " + std::to_string(i);
      if (cpu_ok && a != g)
        return name + ": GPU and CPU decode mutation " + std::to_string(i) + " differently";
    }
    // Out-of-order and missing sections in the streaming decoder.
    const auto header_end = info.header_bytes - 4;
    const std::span<const std::uint8_t> gb(good);
    const auto ch = gb.subspan(header_end - info.codec_header_bytes, info.codec_header_bytes);
    GpuSectionDecoder dec(info, ch);
    const auto& s1 = info.sections[1];
    if (!throws_code([&] { dec.push_section(1, gb.subspan(s1.offset, s1.header_bytes + s1.payload_bytes)); },
                     ErrorCode::Format))
      return name + ": out-of-order section accepted";
    const auto& s0 = info.sections[0];
    dec.push_section(0, gb.subspan(s0.offset, s0.header_bytes + s0.payload_bytes));
    if (!throws_code([&] { dec.finish(); }, ErrorCode::Format))
      return name + ": missing sections not reported";
  }
  return "";
}

// Streams the GPU path does not implement decode on the CPU through
// decode_auto, which says why; streams it implements decode on the GPU.
std::string unsupported_streams_fall_back() {
  const auto cache = make_cache({2, 2, 90, 8}, Pattern::Realistic, 12);
  for (const char* name : {"kivi2", "cachegen-lmcache", "zstd"}) {
    const auto bytes = codec::encode(cache, {name, {}}).bytes;
    const GpuSupport support = gpu_decode_support(bytes);
    if (support || support.reason.empty()) return std::string(name) + ": no reason given for the fallback";
    const AutoDecodeResult r = decode_auto(bytes);
    if (r.backend != "cpu" || r.fallback_reason != support.reason)
      return std::string(name) + ": decode_auto ran on " + r.backend + " (reason '" + r.fallback_reason +
             "')";
    if (!same_bits(r.cache, codec::decode(bytes))) return std::string(name) + ": fallback != codec::decode";
  }
  const auto bytes = codec::encode(cache, {"cachegen", {{"chunk_tokens", "32"}}}).bytes;
  const AutoDecodeResult r = decode_auto(bytes);
  if (r.backend != compute_backend() || !r.fallback_reason.empty())
    return "cachegen: decode_auto ran on " + r.backend + " (reason '" + r.fallback_reason + "')";
  return "";
}

}  // namespace

const std::vector<Check>& all_checks() {
  static const std::vector<Check> checks = {
      {"QuantizeEqualsCpu", "GPU int8/int4 quantize and dequantize == CPU", quantize_equals_cpu},
      {"BitstreamDecodeEqualsCpu",
       "core/codec bitstreams (cachegen at scale token/head/channel, int8, int4, fp16) decoded on the GPU == "
       "round_to_half(codec::decode), "
       "whole and streamed",
       bitstream_decode_equals_cpu},
      {"CachegenEncodeEqualsCpu",
       "GPU cachegen encode (scale token/head/channel) == codec::encode's Table and Chunk payloads, byte for "
       "byte",
       cachegen_encode_equals_cpu},
      {"BitstreamCorruptionDetected", "tampered core/codec bitstreams: GPU verdict == CPU verdict",
       bitstream_corruption_detected},
      {"UnsupportedStreamsFallBack",
       "decode_auto: streams the GPU does not implement decode on the CPU with the reason, cachegen on the "
       "GPU",
       unsupported_streams_fall_back},
      {"GoldenBitstreamsDecode",
       "the committed golden streams (cachegen layout versions 1 and 2, int8, int4, fp16) decode on the GPU "
       "as on the CPU",
       golden_bitstreams_decode},
  };
  return checks;
}

}  // namespace kvscope::kernels::checks
