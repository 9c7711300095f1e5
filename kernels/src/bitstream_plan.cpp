// SPDX-License-Identifier: Apache-2.0
#include "bitstream_plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"

namespace kvscope::kernels::plan {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw Error(ErrorCode::Format, "gpu decode: " + what);
}

// Bounds-checked little-endian reader, as core/codec's ByteReader.
struct Reader {
  std::span<const std::uint8_t> in;
  std::size_t pos = 0;
  std::string what;
  std::uint8_t u8() {
    if (pos >= in.size()) fail(what + ": truncated");
    return in[pos++];
  }
  std::uint16_t u16() {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | (u8() << 8));
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const std::uint8_t b = u8();
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(what + ": varint longer than 10 bytes");
  }
  std::size_t remaining() const { return in.size() - pos; }
};

std::vector<int> int_list(const codec::StreamInfo& info, const std::string& name) {
  const auto it = info.params.find(name);
  if (it == info.params.end()) fail("parameter " + name + " missing from the header");
  std::vector<int> out;
  const std::string& s = it->second;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    try {
      out.push_back(std::stoi(s.substr(i, j - i)));
    } catch (const std::exception&) {
      fail("parameter " + name + " is not a list of integers");
    }
    i = j + 1;
  }
  return out;
}

int int_param(const codec::StreamInfo& info, const std::string& name) {
  const auto v = int_list(info, name);
  if (v.size() != 1) fail("parameter " + name + " is not an integer");
  return v[0];
}

// Bins per layer from bins-per-group and the first layer of each later group
// (core/codec cachegen's layer_bins).
std::vector<int> layer_bins(const std::vector<int>& bins, const std::vector<int>& splits, int layers) {
  if (bins.empty() || splits.size() + 1 != bins.size()) fail("layer splits do not match the bins lists");
  for (std::size_t i = 0; i < splits.size(); ++i)
    if (splits[i] < 1 || splits[i] >= layers || (i > 0 && splits[i] <= splits[i - 1]))
      fail("bad layer splits");
  for (int b : bins)
    if (b < 4 || b > 256) fail("bins out of range");
  std::vector<int> out(static_cast<std::size_t>(layers));
  std::size_t g = 0;
  for (int l = 0; l < layers; ++l) {
    while (g < splits.size() && l >= splits[g]) ++g;
    out[static_cast<std::size_t>(l)] = bins[g];
  }
  return out;
}

}  // namespace

std::span<const std::uint8_t> codec_header_of(const codec::StreamInfo& info,
                                              std::span<const std::uint8_t> bytes) {
  if (info.codec_header_offset + info.codec_header_bytes > info.header_bytes ||
      info.header_bytes > bytes.size())
    fail("bad header size");
  return bytes.subspan(info.codec_header_offset, info.codec_header_bytes);
}

namespace {
// The parameters each codec's GPU path implements. A stream with any other
// parameter (a mode added to the codec since) is not decoded here but on
// the CPU: the GPU never guesses what an unknown parameter means. When a
// codec gains a parameter, add it here once the kernels implement it (or
// when its value leaves the format unchanged, with that value only), with a
// check in tests/kernels.
struct KnownParam {
  const char* name;
  std::vector<std::string> values;  ///< the values implemented; empty = any the CPU accepts
};
const std::vector<KnownParam>& known_params(CodecId codec) {
  static const std::vector<KnownParam> cachegen = {
      {"chunk_tokens", {}}, {"group_size", {}},         {"key_bins", {}}, {"key_layer_splits", {}},
      {"value_bins", {}},   {"value_layer_splits", {}}, {"delta", {}},    {"scale", {}},
      {"profile", {}},
  };
  static const std::vector<KnownParam> chunked = {{"chunk_tokens", {}}};
  return codec == CodecId::Cachegen ? cachegen : chunked;
}

void check_known_params(const codec::StreamInfo& info, CodecId codec) {
  for (const auto& [name, value] : info.params) {
    const auto& known = known_params(codec);
    const auto it =
        std::find_if(known.begin(), known.end(), [&](const KnownParam& k) { return name == k.name; });
    if (it == known.end()) {
      throw Error(ErrorCode::Unsupported,
                  "gpu: " + info.codec + " parameter '" + name + "' has no GPU kernel (the CPU handles it)");
    }
    if (!it->values.empty() && std::find(it->values.begin(), it->values.end(), value) == it->values.end()) {
      throw Error(ErrorCode::Unsupported, "gpu: " + info.codec + " " + name + "=" + value +
                                              " has no GPU kernel (the CPU handles it)");
    }
  }
}
}  // namespace

bool implements_param(CodecId codec, const std::string& name) {
  const auto& known = known_params(codec);
  return std::any_of(known.begin(), known.end(), [&](const KnownParam& k) { return name == k.name; });
}

Layout read_layout(const codec::StreamInfo& info, std::span<const std::uint8_t> codec_header) {
  Layout L;
  L.shape = info.shape;
  if (L.shape.layers <= 0 || L.shape.kv_heads <= 0 || L.shape.head_dim <= 0 || L.shape.tokens <= 0)
    fail("empty cache shape");
  L.chunk_tokens = int_param(info, "chunk_tokens");
  if (L.chunk_tokens < 1 || L.chunk_tokens > 65536) fail("chunk_tokens out of range");
  auto unsupported_version = [&](const std::string& range) {
    throw Error(ErrorCode::Unsupported, "gpu decode: codec '" + info.codec + "' layout version " +
                                            std::to_string(info.codec_version) +
                                            " is not supported (the GPU path reads " + range + ")");
  };
  if (info.codec == "int8" || info.codec == "int4" || info.codec == "fp16") {
    L.codec = info.codec == "int8" ? CodecId::Int8 : info.codec == "int4" ? CodecId::Int4 : CodecId::Fp16;
    if (info.codec_version != 1) unsupported_version("1");  // the layout these kernels implement
    check_known_params(info, L.codec);
    if (!codec_header.empty()) fail(info.codec + ": unexpected codec header");
    return L;
  }
  if (info.codec != "cachegen") {
    throw Error(ErrorCode::Unsupported, "gpu decode: codec '" + info.codec + "' has no GPU decoder");
  }
  L.codec = CodecId::Cachegen;
  if (info.codec_version < kCachegenOldestVersion || info.codec_version > kCachegenVersion)
    unsupported_version(std::to_string(kCachegenOldestVersion) + " to " + std::to_string(kCachegenVersion));
  check_known_params(info, L.codec);
  const auto scale = info.params.find("scale");
  if (info.codec_version == 1) {
    // Version 1 had one step per (chunk, channel) and no scale parameter.
    if (scale != info.params.end()) fail("cachegen: a layout version 1 stream with a scale parameter");
    L.scale = detail::CachegenScale::Channel;
  } else {
    std::string name;
    if (scale != info.params.end()) {
      name = scale->second;
    } else {  // absent: the codec's default, as core/codec resolves it
      for (const auto& spec : codec::find_codec("cachegen").params(&info.shape))
        if (spec.name == "scale") name = spec.default_value;
    }
    if (name == "token") {
      L.scale = detail::CachegenScale::Token;
    } else if (name == "head") {
      L.scale = detail::CachegenScale::Head;
    } else if (name == "channel") {
      L.scale = detail::CachegenScale::Channel;
    } else {
      fail("cachegen: parameter scale must be token, head or channel");
    }
  }
  if (codec_header.size() < 2) fail("cachegen header truncated");
  if (codec_header[0] != 0) {
    throw Error(ErrorCode::Unsupported, "gpu decode: cachegen entropy coder " +
                                            std::to_string(codec_header[0]) +
                                            " has no GPU kernel (the CPU handles it)");
  }
  if (codec_header[1] == 1) {
    throw Error(ErrorCode::Unsupported, "gpu decode: cachegen with a calibration file is decoded on the CPU");
  }
  // Tables shipped in the stream (mode 0, a 2-byte header) is what the
  // kernels read; another mode is the CPU's to accept or reject.
  if (codec_header[1] != 0 || codec_header.size() != 2) {
    throw Error(ErrorCode::Unsupported, "gpu decode: cachegen table mode " + std::to_string(codec_header[1]) +
                                            " with a " + std::to_string(codec_header.size()) +
                                            "-byte codec header has no GPU kernel (the CPU handles it)");
  }
  L.group_size = int_param(info, "group_size");
  if (L.group_size < 1 || L.group_size > 65536) fail("group_size out of range");
  const auto kb =
      layer_bins(int_list(info, "key_bins"),
                 info.params.count("key_layer_splits") && !info.params.at("key_layer_splits").empty()
                     ? int_list(info, "key_layer_splits")
                     : std::vector<int>{},
                 L.shape.layers);
  const auto vb =
      layer_bins(int_list(info, "value_bins"),
                 info.params.count("value_layer_splits") && !info.params.at("value_layer_splits").empty()
                     ? int_list(info, "value_layer_splits")
                     : std::vector<int>{},
                 L.shape.layers);
  L.M.resize(static_cast<std::size_t>(L.shape.layers) * 2);
  for (int l = 0; l < L.shape.layers; ++l) {
    L.M[static_cast<std::size_t>(l) * 2] = kb[static_cast<std::size_t>(l)] / 2 - 1;
    L.M[static_cast<std::size_t>(l) * 2 + 1] = vb[static_cast<std::size_t>(l)] / 2 - 1;
  }
  return L;
}

void check_sections(const codec::StreamInfo& info, const Layout& L) {
  const bool tables = L.codec == CodecId::Cachegen;
  const int chunks = (L.shape.tokens + L.chunk_tokens - 1) / L.chunk_tokens;
  const std::size_t expected = static_cast<std::size_t>(L.shape.layers) * 2 * (chunks + (tables ? 1 : 0));
  if (info.sections.size() != expected) fail("unexpected number of sections");
  std::size_t i = 0;
  for (int l = 0; l < L.shape.layers; ++l) {
    for (int k = 0; k < 2; ++k) {
      if (tables) {
        const auto& s = info.sections[i++];
        if (s.kind != codec::SectionKind::Table || s.layer != l || static_cast<int>(s.kv) != k)
          fail("section order: table of layer " + std::to_string(l) + " expected");
      }
      for (int c = 0; c < chunks; ++c, ++i) {
        const auto& s = info.sections[i];
        const int begin = c * L.chunk_tokens;
        const int count = std::min(L.chunk_tokens, L.shape.tokens - begin);
        if (s.kind != codec::SectionKind::Chunk || s.layer != l || static_cast<int>(s.kv) != k ||
            s.token_begin != begin || s.token_count != count)
          fail("section " + std::to_string(i) + " is not the expected chunk");
      }
    }
  }
}

ModelPool make_pool(const Layout& L) {
  ModelPool pool;
  const int C = L.shape.channels();
  const std::size_t lks = static_cast<std::size_t>(L.shape.layers) * 2;
  pool.models.resize(lks * C);
  pool.table_loaded.assign(lks, false);
  std::uint64_t size = 0;
  for (std::size_t lk = 0; lk < lks; ++lk) {
    const int M = L.M.empty() ? 0 : L.M[lk];
    size += static_cast<std::uint64_t>(C) * ((2 * M + 2) + (4 * M + 2));
  }
  if (size > std::numeric_limits<std::uint32_t>::max()) fail("symbol tables too large");
  pool.cdf.assign(size, 0);
  std::uint32_t off = 0;
  for (std::size_t lk = 0; lk < lks; ++lk) {
    const int M = L.M.empty() ? 0 : L.M[lk];
    for (int c = 0; c < C; ++c) {
      ModelRef& m = pool.models[lk * C + c];
      m.anchor_offset = off;
      off += 2 * M + 2;
      m.delta_offset = off;
      off += 4 * M + 2;
    }
  }
  return pool;
}

namespace {
// core/codec's FreqModel::read: varint first, varint n, n frequencies that
// sum to 65536 inside the alphabet; n = 0 is the empty model.
int read_model(Reader& r, int alphabet, std::uint32_t* cdf) {
  const std::uint64_t first = r.varint();
  const std::uint64_t n = r.varint();
  if (n == 0) {
    if (first != 0) fail(r.what + ": empty model with an offset");
    return 0;
  }
  if (first >= std::uint64_t(alphabet) || n > std::uint64_t(alphabet) - first)
    fail(r.what + ": model exceeds its alphabet");
  std::memset(cdf, 0, sizeof(std::uint32_t) * (static_cast<std::size_t>(alphabet) + 1));
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t f = r.varint();
    sum += f;
    if (sum > 65536) fail(r.what + ": model frequencies exceed 65536");
    cdf[first + i + 1] = static_cast<std::uint32_t>(f);
  }
  if (sum != 65536) fail(r.what + ": model frequencies do not sum to 65536");
  for (int s = 0; s < alphabet; ++s) cdf[s + 1] += cdf[s];
  return alphabet;
}
}  // namespace

void read_table(const Layout& L, int lk, std::span<const std::uint8_t> payload, ModelPool& pool) {
  const int C = L.shape.channels();
  const int M = L.M[static_cast<std::size_t>(lk)];
  Reader r{payload, 0, "cachegen table (layer " + std::to_string(lk / 2) + ")"};
  for (int c = 0; c < C; ++c) {
    ModelRef& m = pool.models[static_cast<std::size_t>(lk) * C + c];
    m.raw = r.u8();  // channel mode: 0 anchor/delta groups, 1 raw
    if (m.raw > 1) fail(r.what + ": bad channel mode");
    m.anchor_n = read_model(r, 2 * M + 1, pool.cdf.data() + m.anchor_offset);
    m.delta_n = read_model(r, 4 * M + 1, pool.cdf.data() + m.delta_offset);
    if (m.raw && m.delta_n != 0) fail(r.what + ": raw channel with a delta model");
  }
  if (r.remaining() != 0) fail(r.what + ": trailing bytes");
  pool.table_loaded[static_cast<std::size_t>(lk)] = true;
}

void plan_chunk(const Layout& L, const ModelPool& pool, const codec::SectionInfo& s,
                std::span<const std::uint8_t> payload, std::uint32_t batch_offset,
                std::vector<StreamDesc>& streams, std::vector<SectionDesc>& sections) {
  const int C = L.shape.channels(), D = L.shape.head_dim, H = L.shape.kv_heads, n = s.token_count;
  const int lk = s.layer * 2 + static_cast<int>(s.kv);
  const std::uint64_t tensor = static_cast<std::uint64_t>(lk) * L.shape.tensor_elements();
  const std::string where = "layer " + std::to_string(s.layer) + " " + kv::to_string(s.kv) + " tokens " +
                            std::to_string(s.token_begin) + "+" + std::to_string(n);
  if (L.codec != CodecId::Cachegen) {
    const std::size_t values = static_cast<std::size_t>(H) * n * D;
    std::size_t expect = values * 2;
    if (L.codec != CodecId::Fp16) {
      expect = static_cast<std::size_t>(n) * 2 + (L.codec == CodecId::Int8 ? values : (values + 1) / 2);
    }
    if (payload.size() != expect) fail(where + ": payload size mismatch");
    if (L.codec != CodecId::Fp16) {
      for (int t = 0; t < n; ++t) {
        const float step =
            half_to_float(static_cast<std::uint16_t>(payload[2 * t] | (payload[2 * t + 1] << 8)));
        if (!std::isfinite(step) || step < 0) fail(where + ": invalid scale");
      }
    }
    sections.push_back({tensor + static_cast<std::uint64_t>(s.token_begin) * D, batch_offset,
                        static_cast<std::uint32_t>(n)});
    return;
  }
  if (!pool.table_loaded[static_cast<std::size_t>(lk)]) fail(where + ": chunk before its table");
  const int M = L.M[static_cast<std::size_t>(lk)];
  Reader r{payload, 0, "cachegen chunk (" + where + ")"};
  const std::size_t first = streams.size();
  streams.resize(first + static_cast<std::size_t>(C));
  // Steps: finite and >= 0, read in place by the kernel.
  const std::uint64_t n_steps = L.step_count(n);
  for (std::uint64_t i = 0; i < n_steps; ++i) {
    const float f = half_to_float(r.u16());
    if (!std::isfinite(f) || f < 0) fail(r.what + ": invalid step");
  }
  std::size_t total = 0;
  std::vector<std::uint32_t> len(static_cast<std::size_t>(C));
  for (int c = 0; c < C; ++c) {
    const std::uint64_t v = r.varint();
    if (v > r.remaining()) fail(r.what + ": stream length exceeds the section");
    len[static_cast<std::size_t>(c)] = static_cast<std::uint32_t>(v);
    total += v;
    if (total > r.remaining()) fail(r.what + ": stream lengths exceed the section");
  }
  if (total != r.remaining()) fail(r.what + ": stream lengths do not add up to the section size");
  std::uint32_t off = batch_offset + static_cast<std::uint32_t>(r.pos);
  for (int c = 0; c < C; ++c) {
    const std::uint32_t model = static_cast<std::uint32_t>(lk * C + c);
    const ModelRef& m = pool.models[model];
    const bool need_delta = n > 1 && !m.raw && L.group_size > 1;  // raw channels have no delta model
    if (m.anchor_n == 0 || (need_delta && m.delta_n == 0))
      fail(r.what + ": chunk needs a model that is empty");
    StreamDesc& d = streams[first + c];
    const int h = c / D, dim = c % D;
    d.out_offset = tensor + (static_cast<std::uint64_t>(h) * L.shape.tokens + s.token_begin) * D + dim;
    d.byte_offset = off;
    d.byte_length = len[static_cast<std::size_t>(c)];
    d.model = model;
    d.tokens = static_cast<std::uint32_t>(n);
    d.step_offset = batch_offset + 2u * static_cast<std::uint32_t>(L.step_base(c));
    d.step_stride = static_cast<std::uint32_t>(L.step_stride());
    d.M = M;
    off += d.byte_length;
  }
}

std::uint32_t section_crc(std::span<const std::uint8_t> section, std::size_t header_bytes) {
  if (section.size() < header_bytes || header_bytes < 20) fail("section shorter than its header");
  return crc32c(section.subspan(header_bytes), crc32c(section.first(20)));
}

}  // namespace kvscope::kernels::plan
