// SPDX-License-Identifier: Apache-2.0
// The container of docs/bitstream.md: framing on encode, validation and
// section walking on inspect, and the decode entry points.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>

#include "byte_io.h"
#include "codec_base.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec {

namespace {

constexpr std::uint8_t kMagic[4] = {'K', 'V', 'S', 'C'};
constexpr std::size_t kPrefixBytes = 16;
constexpr std::size_t kSectionHeaderBytes = 24;
constexpr std::uint32_t kMaxLayers = 4096;
constexpr std::uint32_t kMaxChannels = 1u << 20;
constexpr std::uint32_t kMaxTokens = 1u << 24;
constexpr std::uint32_t kMaxDim = 65536;

std::uint32_t section_crc(const std::uint8_t* header20, std::span<const std::uint8_t> payload) {
  return crc32c(payload, crc32c({header20, 20}));
}

void write_section_header(detail::ByteWriter& w, const detail::SectionData& s) {
  std::vector<std::uint8_t> h;
  detail::ByteWriter hw(h);
  hw.u8(static_cast<std::uint8_t>(s.kind));
  hw.u8(static_cast<std::uint8_t>(s.kv));
  hw.u16(0);
  hw.u32(static_cast<std::uint32_t>(s.layer));
  hw.u32(static_cast<std::uint32_t>(s.token_begin));
  hw.u32(static_cast<std::uint32_t>(s.token_count));
  if (s.payload.size() > 0xffffffffu) throw Error(ErrorCode::InvalidArgument, "section larger than 4 GiB");
  hw.u32(static_cast<std::uint32_t>(s.payload.size()));
  w.bytes(h.data(), h.size());
  w.u32(section_crc(h.data(), s.payload));
}

// Sections every stream of this shape/codec must have, in order.
void check_layout(const StreamInfo& info, bool tables) {
  long long chunk_tokens = 0;
  auto it = info.params.find("chunk_tokens");
  try {
    if (it != info.params.end()) chunk_tokens = std::stoll(it->second);
  } catch (const std::exception&) {
  }
  if (chunk_tokens < 1 || chunk_tokens > 65536)
    throw Error(ErrorCode::Format, "bitstream: missing or invalid chunk_tokens parameter");
  const int ct = static_cast<int>(chunk_tokens);
  const int chunks = detail::chunk_count(info.shape.tokens, ct);
  const std::size_t expected = std::size_t(info.shape.layers) * 2 * (std::size_t(chunks) + (tables ? 1 : 0));
  if (info.sections.size() != expected)
    throw Error(ErrorCode::Format, "bitstream: " + std::to_string(info.sections.size()) +
                                       " sections, expected " + std::to_string(expected));
  std::size_t i = 0;
  for (int l = 0; l < info.shape.layers; ++l) {
    for (int k = 0; k < 2; ++k) {
      auto bad = [&](const std::string& what) {
        throw Error(ErrorCode::Format, "bitstream: section " + std::to_string(i) + " " + what);
      };
      if (tables) {
        const auto& s = info.sections[i];
        if (s.kind != SectionKind::Table || s.layer != l || int(s.kv) != k)
          bad("should be the table of layer " + std::to_string(l));
        ++i;
      }
      for (int c = 0; c < chunks; ++c, ++i) {
        const auto& s = info.sections[i];
        const int begin = c * ct;
        const int count = std::min(ct, info.shape.tokens - begin);
        if (s.kind != SectionKind::Chunk || s.layer != l || int(s.kv) != k || s.token_begin != begin ||
            s.token_count != count)
          bad("is out of place (expected chunk of layer " + std::to_string(l) + " tokens " +
              std::to_string(begin) + "+" + std::to_string(count) + ")");
      }
    }
  }
}

const detail::CodecBase& codec_for(const StreamInfo& info) {
  const Codec* found = nullptr;
  for (const Codec* c : all_codecs())
    if (c->name() == info.codec) found = c;
  if (!found) throw Error(ErrorCode::Unsupported, "bitstream: unknown codec '" + info.codec + "'");
  const auto* base = dynamic_cast<const detail::CodecBase*>(found);
  if (!base) throw Error(ErrorCode::Internal, "codec '" + info.codec + "' has no decoder");
  if (info.codec_version < base->oldest_codec_version() || info.codec_version > base->codec_version()) {
    std::string range = std::to_string(base->codec_version());
    if (base->oldest_codec_version() != base->codec_version())
      range = std::to_string(base->oldest_codec_version()) + " to " + range;
    throw Error(ErrorCode::Unsupported, "bitstream: codec '" + info.codec + "' layout version " +
                                            std::to_string(info.codec_version) +
                                            " is not supported (this build reads " + range + ")");
  }
  return *base;
}

}  // namespace

ParamSet stream_params(const StreamInfo& info) {
  return codec_for(info).coded_params(info);
}

namespace {

struct Prepared {
  detail::StreamHeader header;
  const detail::CodecBase* codec = nullptr;
  bool tables = false;
};

Prepared prepare(std::span<const std::uint8_t> bytes, const DecodeOptions& options) {
  Prepared p;
  p.header.info = inspect_stream(bytes, true);
  const auto& info = p.header.info;
  require_within_limit(info.shape.elements(), options.max_elements, "bitstream");
  p.codec = &codec_for(info);
  // The codec header lies inside the header body (before the section count
  // and any extended info); inspect_stream recorded where.
  p.header.codec_header = bytes.subspan(info.codec_header_offset, info.codec_header_bytes);
  p.tables = p.codec->has_tables(p.header);
  check_layout(info, p.tables);
  return p;
}

}  // namespace

const char* to_string(SectionKind kind) {
  switch (kind) {
    case SectionKind::Table:
      return "table";
    case SectionKind::Chunk:
      return "chunk";
  }
  return "unknown";
}

namespace {

void check_shape(const kv::CacheShape& shape, const std::string& codec) {
  if (shape.layers < 1 || shape.kv_heads < 1 || shape.head_dim < 1 || shape.tokens < 0 ||
      std::uint32_t(shape.layers) > kMaxLayers || std::uint32_t(shape.channels()) > kMaxChannels ||
      std::uint32_t(shape.head_dim) > kMaxDim || std::uint32_t(shape.tokens) > kMaxTokens)
    throw Error(ErrorCode::InvalidArgument, "codec '" + codec + "': cache shape out of the supported range");
}

bool has_extended_info(const kv::CacheInfo& info) {
  return !info.rope_inv_freq.empty() || !info.layer_window.empty();
}

// The extended-info block (docs/bitstream.md section 1.1): RoPE frequency
// tables stored once each with a per-layer index, then the layer windows.
void write_extended_info(detail::ByteWriter& b, const kv::CacheShape& shape, const kv::CacheInfo& info) {
  const std::size_t L = std::size_t(shape.layers);
  if (!info.rope_inv_freq.empty() &&
      (info.rope_inv_freq.size() != L || shape.head_dim % 2 != 0 ||
       std::any_of(info.rope_inv_freq.begin(), info.rope_inv_freq.end(),
                   [&](const auto& t) { return t.size() != std::size_t(shape.head_dim / 2); })))
    throw Error(ErrorCode::InvalidArgument, "cache info: RoPE frequency tables do not match the cache shape");
  if (!info.layer_window.empty() &&
      (info.layer_window.size() != L ||
       std::any_of(info.layer_window.begin(), info.layer_window.end(), [](std::int32_t w) { return w < 0; })))
    throw Error(ErrorCode::InvalidArgument, "cache info: layer windows do not match the cache shape");
  std::vector<const std::vector<double>*> tables;
  std::vector<std::uint16_t> index;
  for (const auto& t : info.rope_inv_freq) {
    auto it = std::find_if(tables.begin(), tables.end(), [&](const auto* u) { return *u == t; });
    if (it == tables.end()) {
      tables.push_back(&t);
      it = tables.end() - 1;
    }
    index.push_back(static_cast<std::uint16_t>(it - tables.begin()));
  }
  b.u16(static_cast<std::uint16_t>(tables.size()));
  for (const auto* t : tables)
    for (double f : *t) b.f64(f);
  for (auto i : index) b.u16(i);
  b.u8(info.layer_window.empty() ? 0 : 1);
  for (auto w : info.layer_window) b.u32(static_cast<std::uint32_t>(w));
}

void read_extended_info(detail::ByteReader& h, const kv::CacheShape& shape, kv::CacheInfo& info) {
  const std::size_t L = std::size_t(shape.layers);
  const std::uint16_t ntables = h.u16();
  if (ntables > L) h.fail("more RoPE tables than layers");
  if (ntables > 0) {
    if (shape.head_dim % 2 != 0) h.fail("RoPE tables with an odd head_dim");
    const std::size_t half = std::size_t(shape.head_dim / 2);
    h.need(std::size_t(ntables) * half * 8 + L * 2);
    std::vector<std::vector<double>> tables(ntables, std::vector<double>(half));
    for (auto& t : tables)
      for (auto& f : t) {
        f = h.f64();
        if (!std::isfinite(f)) h.fail("non-finite RoPE frequency");
      }
    info.rope_inv_freq.resize(L);
    for (auto& t : info.rope_inv_freq) {
      const std::uint16_t i = h.u16();
      if (i >= ntables) h.fail("RoPE table index out of range");
      t = tables[i];
    }
  }
  const std::uint8_t has_windows = h.u8();
  if (has_windows > 1) h.fail("bad layer-window flag");
  if (has_windows) {
    h.need(L * 4);
    info.layer_window.resize(L);
    for (auto& w : info.layer_window) {
      const std::uint32_t v = h.u32();
      if (v > 0x7fffffffu) h.fail("layer window out of range");
      w = std::int32_t(v);
    }
  }
}

// Frames a codec's parts into the container (docs/bitstream.md section 1) and
// accounts the sizes.
EncodeResult frame(const detail::CodecBase& codec, const detail::Params& p, const kv::CacheShape& shape,
                   const kv::CacheInfo& info, const detail::EncodedParts& parts) {
  std::vector<std::uint8_t> body;
  detail::ByteWriter b(body);
  b.str(codec.name());
  b.u16(parts.codec_version ? parts.codec_version : codec.codec_version());
  const ParamSet& header_params = parts.header_params ? *parts.header_params : p.values();
  b.u16(static_cast<std::uint16_t>(header_params.size()));
  for (const auto& [k, v] : header_params) {
    b.str(k);
    b.str(v);
  }
  b.u32(shape.layers);
  b.u32(shape.kv_heads);
  b.u32(shape.tokens);
  b.u32(shape.head_dim);
  b.str(info.model_name);
  b.str(info.architecture);
  b.str(info.model_sha256);
  b.u8(info.rope_applied ? 1 : 0);
  b.f64(info.rope_theta);
  for (const auto* v : {&info.token_ids, &info.positions}) {
    const std::size_t n = v->size() == std::size_t(shape.tokens) ? v->size() : 0;
    b.u32(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) b.i32((*v)[i]);
  }
  // The extended info comes before the codec header, so the codec header
  // always ends 4 bytes (section_count) before the body does: readers find
  // it from header_bytes and codec_header_bytes alone.
  const bool extended = has_extended_info(info);
  if (extended) write_extended_info(b, shape, info);
  b.u32(static_cast<std::uint32_t>(parts.codec_header.size()));
  b.bytes(parts.codec_header.data(), parts.codec_header.size());
  b.u32(static_cast<std::uint32_t>(parts.sections.size()));

  EncodeResult r;
  std::size_t total = kPrefixBytes + body.size();
  for (const auto& s : parts.sections) total += kSectionHeaderBytes + s.payload.size();
  r.bytes.reserve(total);
  detail::ByteWriter w(r.bytes);
  w.bytes(kMagic, 4);
  w.u16(kFormatVersion);
  w.u16(extended ? kFlagExtendedInfo : 0);
  w.u32(static_cast<std::uint32_t>(body.size()));
  w.u32(crc32c(body));
  w.bytes(body.data(), body.size());

  auto& size = r.size;
  size.layer_bytes.assign(std::size_t(shape.layers) * 2, 0);
  size.header_bytes = kPrefixBytes + body.size() - parts.extra_table_bytes;
  size.table_bytes = parts.extra_table_bytes;
  for (const auto& s : parts.sections) {
    write_section_header(w, s);
    w.bytes(s.payload.data(), s.payload.size());
    size.header_bytes += kSectionHeaderBytes;
    size.table_bytes += s.table_bytes;
    size.step_bytes += s.step_bytes;
    size.payload_bytes += s.payload.size() - s.table_bytes - s.step_bytes;
    size.layer_bytes[std::size_t(s.layer) * 2 + int(s.kv)] += kSectionHeaderBytes + s.payload.size();
  }
  size.original_bytes = shape.fp16_bytes();
  size.encoded_bytes = r.bytes.size();
  size.elements = shape.elements();
  size.entropy_bits_per_element = size.elements ? parts.entropy_bits / double(size.elements) : 0.0;
  return r;
}

}  // namespace

EncodeResult detail::CodecBase::encode(const kv::KVCache& cache, const ParamSet& params,
                                       const EncodeOptions& options) const {
  const auto t0 = std::chrono::steady_clock::now();
  const auto& shape = cache.shape();
  check_shape(shape, name());
  const Params p(name(), this->params(&shape), complete_params(params, shape));
  report_progress(options.progress, 0.0, "encoding");
  EncodeResult r = frame(*this, p, shape, cache.info, encode_parts(cache, p, options));
  report_progress(options.progress, 1.0, "encoding");
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<std::uint8_t> assemble_stream(const kv::CacheShape& shape, const kv::CacheInfo& info,
                                          const CodecConfig& config,
                                          std::span<const std::uint8_t> codec_header, bool with_tables,
                                          std::vector<std::vector<std::uint8_t>> payloads) {
  const auto* codec = dynamic_cast<const detail::CodecBase*>(&find_codec(config.codec));
  if (!codec) throw Error(ErrorCode::Internal, "codec '" + config.codec + "' has no container writer");
  check_shape(shape, config.codec);
  // Completed as encode() completes them, so the header is the one encode() writes.
  const detail::Params p(config.codec, codec->params(&shape), codec->complete_params(config.params, shape));
  const int ct = p.get_int("chunk_tokens");
  const int chunks = detail::chunk_count(shape.tokens, ct);
  const std::size_t expected = std::size_t(shape.layers) * 2 * (std::size_t(chunks) + (with_tables ? 1 : 0));
  if (payloads.size() != expected)
    throw Error(ErrorCode::InvalidArgument, "assemble_stream: " + std::to_string(payloads.size()) +
                                                " section payloads, the container needs " +
                                                std::to_string(expected));
  detail::EncodedParts parts;
  codec->describe_header(p, shape, parts);
  parts.codec_header.assign(codec_header.begin(), codec_header.end());
  parts.sections.reserve(expected);
  std::size_t i = 0;
  for (int l = 0; l < shape.layers; ++l)
    for (int k = 0; k < 2; ++k) {
      auto add = [&](SectionKind kind, int begin, int count) {
        detail::SectionData s;
        s.kind = kind;
        s.layer = l;
        s.kv = kv::Kind(k);
        s.token_begin = begin;
        s.token_count = count;
        s.payload = std::move(payloads[i++]);
        s.table_bytes = kind == SectionKind::Table ? s.payload.size() : 0;
        parts.sections.push_back(std::move(s));
      };
      if (with_tables) add(SectionKind::Table, 0, 0);
      for (int c = 0; c < chunks; ++c) add(SectionKind::Chunk, c * ct, std::min(ct, shape.tokens - c * ct));
    }
  return frame(*codec, p, shape, info, parts).bytes;
}

StreamInfo inspect_stream(std::span<const std::uint8_t> bytes, bool verify_crc) {
  detail::ByteReader r(bytes, "bitstream");
  StreamInfo info;
  info.total_bytes = bytes.size();
  auto magic = r.bytes(4);
  if (std::memcmp(magic.data(), kMagic, 4) != 0) r.fail("not a KVScope bitstream (bad magic)");
  info.format_version = r.u16();
  if (info.format_version != kFormatVersion)
    throw Error(ErrorCode::Unsupported, "bitstream: format version " + std::to_string(info.format_version) +
                                            " is not supported (this build reads " +
                                            std::to_string(kFormatVersion) + ")");
  const std::uint16_t flags = r.u16();
  if ((flags & ~kFlagExtendedInfo) != 0)
    throw Error(ErrorCode::Unsupported, "bitstream: unknown header flags");
  const std::uint32_t body_len = r.u32();
  const std::uint32_t body_crc = r.u32();
  auto body = r.bytes(body_len);
  if (crc32c(body) != body_crc) throw Error(ErrorCode::Checksum, "bitstream: header checksum mismatch");
  info.header_bytes = kPrefixBytes + body_len;

  detail::ByteReader h(body, "bitstream header");
  info.codec = h.str();
  info.codec_version = h.u16();
  const int nparams = h.u16();
  for (int i = 0; i < nparams; ++i) {
    std::string k = h.str();
    std::string v = h.str();
    if (!info.params.emplace(std::move(k), std::move(v)).second) h.fail("duplicate parameter");
  }
  const std::uint32_t layers = h.u32(), heads = h.u32(), tokens = h.u32(), dim = h.u32();
  if (layers < 1 || layers > kMaxLayers || heads < 1 || dim < 1 || dim > kMaxDim ||
      std::uint64_t(heads) * dim > kMaxChannels || tokens > kMaxTokens)
    h.fail("cache shape out of range");
  info.shape = {int(layers), int(heads), int(tokens), int(dim)};
  info.info.model_name = h.str();
  info.info.architecture = h.str();
  info.info.model_sha256 = h.str();
  const std::uint8_t rope = h.u8();
  if (rope > 1) h.fail("bad rope flag");
  info.info.rope_applied = rope == 1;
  info.info.rope_theta = h.f64();
  for (auto* v : {&info.info.token_ids, &info.info.positions}) {
    const std::uint32_t n = h.u32();
    if (n != 0 && n != tokens) h.fail("token id/position count differs from the token count");
    h.need(std::size_t(n) * 4);
    v->resize(n);
    for (auto& x : *v) x = h.i32();
  }
  if (flags & kFlagExtendedInfo) read_extended_info(h, info.shape, info.info);
  const std::uint32_t ch_len = h.u32();
  info.codec_header_offset = kPrefixBytes + h.pos();
  h.bytes(ch_len);
  info.codec_header_bytes = ch_len;
  const std::uint32_t nsections = h.u32();
  if (!h.done()) h.fail("trailing bytes in header");
  if (std::uint64_t(nsections) * kSectionHeaderBytes > r.remaining())
    r.fail("section count exceeds the stream size");

  info.sections.reserve(nsections);
  for (std::uint32_t i = 0; i < nsections; ++i) {
    SectionInfo s;
    s.offset = r.pos();
    s.header_bytes = kSectionHeaderBytes;
    auto hdr = r.bytes(20);
    detail::ByteReader sr(hdr, "bitstream section " + std::to_string(i));
    const std::uint8_t kind = sr.u8(), kv = sr.u8();
    const std::uint16_t reserved = sr.u16();
    const std::uint32_t layer = sr.u32(), begin = sr.u32(), count = sr.u32(), len = sr.u32();
    s.crc = r.u32();
    if (kind != 1 && kind != 2) sr.fail("unknown section kind " + std::to_string(kind));
    if (kv > 1 || reserved != 0) sr.fail("bad kind/reserved field");
    if (layer >= layers) sr.fail("layer index " + std::to_string(layer) + " out of range");
    if (kind == 2) {
      if (count == 0 || std::uint64_t(begin) + count > tokens) sr.fail("token range out of range");
    } else if (begin != 0 || count != 0) {
      sr.fail("table section with a token range");
    }
    s.kind = static_cast<SectionKind>(kind);
    s.kv = static_cast<kv::Kind>(kv);
    s.layer = int(layer);
    s.token_begin = int(begin);
    s.token_count = int(count);
    s.payload_offset = r.pos();
    s.payload_bytes = len;
    auto payload = r.bytes(len);
    if (verify_crc && section_crc(hdr.data(), payload) != s.crc)
      throw Error(ErrorCode::Checksum, "bitstream: section " + std::to_string(i) + " checksum mismatch");
    info.sections.push_back(s);
  }
  if (!r.done()) r.fail(std::to_string(r.remaining()) + " trailing bytes after the last section");
  return info;
}

kv::KVCache decode(std::span<const std::uint8_t> bytes, const DecodeOptions& options) {
  kv::KVCache out;
  decode_into(bytes, out, options);
  return out;
}

namespace {

// Runs a decode; an allocation the machine cannot satisfy (a cache under
// max_elements but larger than the memory left, or a process memory limit)
// becomes an Error instead of escaping as std::bad_alloc.
template <typename Body>
auto within_memory(std::span<const std::uint8_t> bytes, Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    std::string what = "bitstream: not enough memory to decode it";
    try {
      const auto info = inspect_stream(bytes, false);
      what += " (a cache of " + std::to_string(info.shape.elements()) + " values, " +
              std::to_string(info.shape.elements() * sizeof(float) >> 20) + " MiB as float32)";
    } catch (const std::exception&) {
    }
    throw Error(ErrorCode::Unsupported, what);
  } catch (const std::length_error&) {
    throw Error(ErrorCode::Unsupported, "bitstream: a size it declares is too large to allocate");
  }
}

void decode_into_unchecked(std::span<const std::uint8_t> bytes, kv::KVCache& out,
                           const DecodeOptions& options) {
  const Prepared p = prepare(bytes, options);
  const auto& info = p.header.info;
  std::vector<std::span<const std::uint8_t>> tables(std::size_t(info.shape.layers) * 2);
  std::vector<std::size_t> chunks;
  for (std::size_t i = 0; i < info.sections.size(); ++i) {
    const auto& s = info.sections[i];
    if (s.kind == SectionKind::Table)
      tables[std::size_t(s.layer) * 2 + int(s.kv)] = bytes.subspan(s.payload_offset, s.payload_bytes);
    else
      chunks.push_back(i);
  }
  auto decoder = p.codec->make_decoder(p.header, tables, options);
  if (out.shape() != info.shape) out = kv::KVCache(info.shape);
  out.info = info.info;
  std::atomic<std::size_t> done{0};
  report_progress(options.progress, 0.0, "decoding");
  parallel_for(chunks.size(), options.threads, [&](std::size_t j) {
    const auto& s = info.sections[chunks[j]];
    decoder->decode(s, bytes.subspan(s.payload_offset, s.payload_bytes), detail::tensor_out(out, s));
    const std::size_t n = ++done;
    if (options.progress && (n % 64 == 0 || n == chunks.size()))
      report_progress(options.progress, double(n) / double(chunks.size()), "decoding");
  });
}

}  // namespace

void decode_into(std::span<const std::uint8_t> bytes, kv::KVCache& out, const DecodeOptions& options) {
  within_memory(bytes, [&] { decode_into_unchecked(bytes, out, options); });
}

DecodedChunk decode_section(std::span<const std::uint8_t> bytes, std::size_t section_index,
                            const DecodeOptions& options) {
  return within_memory(bytes, [&] {
    const Prepared p = prepare(bytes, options);
    const auto& info = p.header.info;
    if (section_index >= info.sections.size())
      throw Error(ErrorCode::InvalidArgument, "section index " + std::to_string(section_index) +
                                                  " out of range (" + std::to_string(info.sections.size()) +
                                                  " sections)");
    const auto& s = info.sections[section_index];
    if (s.kind != SectionKind::Chunk)
      throw Error(ErrorCode::InvalidArgument, "section " + std::to_string(section_index) + " is not a chunk");
    std::vector<std::span<const std::uint8_t>> tables(std::size_t(info.shape.layers) * 2);
    if (p.tables) {
      for (const auto& t : info.sections)
        if (t.kind == SectionKind::Table && t.layer == s.layer && t.kv == s.kv)
          tables[std::size_t(s.layer) * 2 + int(s.kv)] = bytes.subspan(t.payload_offset, t.payload_bytes);
    }
    auto decoder = p.codec->make_decoder(p.header, tables, options);
    DecodedChunk c;
    c.layer = s.layer;
    c.kv = s.kv;
    c.token_begin = s.token_begin;
    c.token_count = s.token_count;
    c.kv_heads = info.shape.kv_heads;
    c.head_dim = info.shape.head_dim;
    c.values.assign(std::size_t(c.kv_heads) * c.token_count * c.head_dim, 0.0f);
    decoder->decode(s, bytes.subspan(s.payload_offset, s.payload_bytes),
                    detail::TensorOut{c.values.data(), c.kv_heads, c.token_count, c.head_dim, 0});
    return c;
  });
}

}  // namespace kvscope::codec
