#pragma once

// The entropy-coded form of a cache as the GPU sees it: per-channel models
// (quantization steps + 16-bit CDFs), one descriptor per independent stream
// and the concatenated stream bytes. This is the "stream table" a bitstream
// parser hands to the kernels; it is also what the kernels' encoder produces.
//
// Streams are independent per (chunk of tokens, layer, K|V, channel) and are
// ordered chunk-major (chunk, layer, kind, channel), so one chunk's streams
// and bytes are contiguous and a chunk decodes on its own.
//
// Inside a stream, tokens form groups of `group_size`; the first token of a
// group (the anchor) is coded on its own, the others as deltas to the
// reconstructed anchor (CacheGen, docs/architecture.md), each with its own CDF:
//   anchor:  x = (s - n_a/2) * anchor_step
//   delta:   x = anchor + (s - n_d/2) * delta_step
// and the decoded value is stored as fp16 (round to nearest even).
//
// Plain C++: includable without nvcc.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels {

/// Quantization and CDFs of one (layer, kind, channel).
struct ChannelModel {
  std::uint32_t anchor_cdf = 0;      ///< index of the anchor CDF's first entry in StreamTable::cdfs
  std::uint32_t delta_cdf = 0;       ///< index of the delta CDF's first entry
  std::uint16_t anchor_symbols = 0;  ///< n_a, 1..kMaxSymbols
  std::uint16_t delta_symbols = 0;   ///< n_d, 1..kMaxSymbols
  float anchor_step = 0;             ///< finite, >= 0
  float delta_step = 0;
  bool operator==(const ChannelModel&) const = default;
};

/// One independent stream: where its bytes are and where its values go.
struct StreamDesc {
  std::uint64_t byte_offset = 0;  ///< into StreamTable::payload
  std::uint32_t byte_length = 0;
  std::uint32_t model = 0;  ///< index into StreamTable::models
  std::uint64_t out_offset =
      0;  ///< element index of the first value in the [layer][kind][head][token][dim] cache
  std::uint32_t tokens = 0;      ///< values in this stream (the chunk's token count)
  std::uint32_t out_stride = 0;  ///< elements between consecutive tokens (head_dim)
  bool operator==(const StreamDesc&) const = default;
};

inline constexpr int kMaxSymbols = 4096;

struct StreamTable {
  kv::CacheShape shape;
  int chunk_tokens = 256;             ///< tokens per chunk; the last chunk may be shorter
  int group_size = 10;                ///< tokens per anchor group
  std::vector<ChannelModel> models;   ///< index (layer * 2 + kind) * channels + channel
  std::vector<std::uint16_t> cdfs;    ///< all CDFs back to back (see detail/range_coder.h)
  std::vector<StreamDesc> streams;    ///< chunk-major, see above
  std::vector<std::uint8_t> payload;  ///< every stream's bytes
  /// CRC-32C of each chunk's bytes (kvscope/common/crc32c.h), checked on the
  /// host before any byte is decoded: a range coder decodes most corrupted
  /// bytes into wrong but valid symbols, so only a checksum catches them all.
  std::vector<std::uint32_t> chunk_crc;

  int chunks() const { return shape.tokens == 0 ? 0 : (shape.tokens + chunk_tokens - 1) / chunk_tokens; }
  /// Streams per chunk: layers * 2 * channels.
  std::size_t streams_per_chunk() const {
    return static_cast<std::size_t>(shape.layers) * 2 * static_cast<std::size_t>(shape.channels());
  }
  /// Bytes of the payload belonging to chunk `c` (its streams are contiguous).
  std::span<const std::uint8_t> chunk_payload(int c) const;
  /// Descriptors of chunk `c`'s streams.
  std::span<const StreamDesc> chunk_streams(int c) const;
};

/// Descriptors the layout above implies for `shape` and `chunk_tokens`, with
/// byte offsets and lengths left 0. Throws Error(InvalidArgument) on a bad shape.
std::vector<StreamDesc> canonical_streams(const kv::CacheShape& shape, int chunk_tokens);

/// Checks everything the kernels rely on before any byte reaches the GPU:
/// shape and counts, every model's CDF range and monotonicity, finite steps,
/// stream descriptors equal to the canonical layout, byte ranges inside the
/// payload and contiguous in stream order, then each chunk's CRC. Throws
/// Error(Format) naming the first problem, Error(Checksum) on a CRC mismatch. What cannot be checked here
/// (the coded bytes themselves) is flagged by the decoder (Error(Format) from the decode calls).
void validate(const StreamTable& table);

/// Sets chunk_crc from the payload (what an encoder does last).
void seal(StreamTable& table);

/// The header part of validate(): shape, sizes, models and CDFs, not the
/// streams or payload (what a streaming receiver has before the chunks).
void validate_header(const StreamTable& table);

/// Checks one chunk's descriptors against the layout, with byte offsets
/// relative to the chunk's own bytes (contiguous from 0, summing to
/// bytes.size()), and the bytes against `crc`. Throws Error(Format) or
/// Error(Checksum).
void validate_chunk(const StreamTable& header, int chunk, std::span<const StreamDesc> streams,
                    std::span<const std::uint8_t> bytes, std::uint32_t crc);

/// Encoder settings. Bins are per layer group, separately for K and V.
struct EncodeParams {
  int chunk_tokens = 256;
  int group_size = 10;
  int anchor_bins = 64;
  /// Delta bins for the first, middle and last third of the layers.
  int key_bins[3] = {32, 16, 16};
  int value_bins[3] = {32, 16, 16};
};

/// Throws Error(InvalidArgument) naming the parameter that is out of range.
void validate(const EncodeParams& params, const kv::CacheShape& shape);

/// Delta bins of `layer`/`kind` under `params`.
int delta_bins(const EncodeParams& params, int layers, int layer, kv::Kind kind);

/// The CPU reference codec: the same per-stream functions the kernels run
/// (detail/stream_codec.h), driven by host threads. `threads` 0 = all.
StreamTable cpu_encode(const kv::KVCache& cache, const EncodeParams& params, int threads = 0);
/// Decodes to fp16 bits in the cache layout. Throws Error(Format) on corrupt input.
std::vector<std::uint16_t> cpu_decode_fp16(const StreamTable& table, int threads = 0);
/// Same, converted to a float KVCache.
kv::KVCache cpu_decode(const StreamTable& table, int threads = 0);

/// fp16 bits -> float KVCache of `shape` (sizes must match).
kv::KVCache fp16_to_cache(const kv::CacheShape& shape, std::span<const std::uint16_t> halves);

}  // namespace kvscope::kernels
