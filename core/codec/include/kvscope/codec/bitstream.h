// SPDX-License-Identifier: Apache-2.0
#pragma once

// Looking inside a KVScope bitstream (docs/bitstream.md) without decoding it:
// the header, and where every section lies. The HDF5 exporter, the streamer
// and `kvscope-cli inspect` use this; decode_section() decodes one chunk.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"

namespace kvscope::codec {

/// Container format version this build writes and reads.
inline constexpr std::uint16_t kFormatVersion = 1;
/// Header flag: the header body ends with the extended cache info (per-layer
/// RoPE frequencies, sliding windows). Set only when the cache has them, so
/// streams of caches without them are byte-identical to earlier builds'.
inline constexpr std::uint16_t kFlagExtendedInfo = 1;

/// What a section holds.
enum class SectionKind : std::uint8_t {
  Table = 1,  ///< side information for one (layer, kind): symbol tables (CDFs)
  Chunk = 2,  ///< the values of tokens [token_begin, token_begin+token_count) of one (layer, kind)
};
const char* to_string(SectionKind kind);

/// One section's place in the stream (all offsets from the stream's first byte).
struct SectionInfo {
  SectionKind kind = SectionKind::Chunk;
  int layer = 0;
  kv::Kind kv = kv::Kind::Key;
  int token_begin = 0;             ///< Chunk: first token; Table: 0
  int token_count = 0;             ///< Chunk: tokens; Table: 0
  std::size_t offset = 0;          ///< first byte of the section header
  std::size_t header_bytes = 0;    ///< section header size (24)
  std::size_t payload_offset = 0;  ///< first byte of the payload
  std::size_t payload_bytes = 0;
  std::uint32_t crc = 0;  ///< stored CRC32C over section header fields + payload
};

/// A parsed container header and its section directory.
struct StreamInfo {
  std::uint16_t format_version = 0;
  std::string codec;
  std::uint16_t codec_version = 0;
  ParamSet params;  ///< every parameter, defaults resolved, as encoded
  kv::CacheShape shape;
  kv::CacheInfo info;
  std::size_t header_bytes = 0;        ///< fixed prefix + header body
  std::size_t codec_header_bytes = 0;  ///< codec-private part of the header body
  /// Where the codec header starts (from the stream's first byte). Not
  /// derivable from header_bytes: the extended cache info (flag bit 0)
  /// follows the section count.
  std::size_t codec_header_offset = 0;
  std::vector<SectionInfo> sections;
  std::size_t total_bytes = 0;
};

/// Parses the header and walks the section headers. Validates magic,
/// version, the header CRC, every length and index against the stream size,
/// and (when verify_crc) each section's CRC. Throws Error(Format |
/// Checksum | Unsupported) with a message on any problem.
StreamInfo inspect_stream(std::span<const std::uint8_t> bitstream, bool verify_crc = true);

/// Every parameter of the stream's codec with the value the stream was coded
/// with: the header's values, and for a parameter the header leaves out what
/// its absence means at the stream's layout version (a cachegen version 2
/// stream has no sinks and midpoint reconstruction, whatever today's
/// defaults say; docs/bitstream.md). Encoder-only parameters the header
/// never carries (cachegen's `rounding`) get their defaults. Throws
/// Error(Unsupported) for an unknown codec or layout version, Error(Format)
/// when the header's parameters do not fit their version.
ParamSet stream_params(const StreamInfo& info);

/// One decoded chunk: the values of one (layer, kind) for a token range.
struct DecodedChunk {
  int layer = 0;
  kv::Kind kv = kv::Kind::Key;
  int token_begin = 0;
  int token_count = 0;
  int kv_heads = 0;
  int head_dim = 0;
  std::vector<float> values;  ///< [kv_heads, token_count, head_dim]
};

/// Decodes the Chunk section at `section_index` (an index into
/// StreamInfo::sections) on its own, reading only the header and the Table
/// section of the same (layer, kind) when the codec has one.
/// Error(InvalidArgument) when the index is out of range or not a Chunk;
/// otherwise the same errors as decode().
DecodedChunk decode_section(std::span<const std::uint8_t> bitstream, std::size_t section_index,
                            const DecodeOptions& options = {});

/// Frames section payloads computed elsewhere (the CUDA encoder) into a
/// complete stream: the header of `config` (parameters validated and resolved
/// for `shape` as encode() does), `info` (model, token ids), `codec_header`,
/// and the sections in the container's order (docs/bitstream.md 1.3: per
/// layer and kind, the Table section when `with_tables`, then the chunks).
/// `payloads` must hold one payload per section in that order, else
/// Error(InvalidArgument); the payloads are not checked (decode() does).
/// With encode()'s payloads and codec header the bytes equal encode()'s.
std::vector<std::uint8_t> assemble_stream(const kv::CacheShape& shape, const kv::CacheInfo& info,
                                          const CodecConfig& config,
                                          std::span<const std::uint8_t> codec_header, bool with_tables,
                                          std::vector<std::vector<std::uint8_t>> payloads);

}  // namespace kvscope::codec
