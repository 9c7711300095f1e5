// SPDX-License-Identifier: Apache-2.0
#pragma once

// A context in a chunk store: its manifest (which chunks exist at which
// levels, their sizes, CRCs and measured decode times) and the checked
// fetch of one chunk (docs/streaming.md, "Manifest" and "Checks").
//
// Publishing writes every chunk first and the manifest last, so a receiver
// that finds a manifest finds a complete context (unless chunks were evicted
// or altered since: fetch_chunk() reports that by key).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvscope/common/progress.h"
#include "kvscope/stream/chunk_key.h"
#include "kvscope/stream/chunk_store.h"
#include "kvscope/stream/encoded_context.h"
#include "kvscope/stream/ladder.h"

namespace kvscope::stream {

/// One level of a published context.
struct ManifestLevel {
  std::string id;    ///< level_id(config): the last part of its chunk keys
  std::string name;  ///< ladder level name when published (for reports)
  codec::CodecConfig config;
  std::vector<std::uint64_t> bytes;    ///< per chunk: the value's length
  std::vector<std::uint32_t> crc32c;   ///< per chunk: CRC32C of the whole value
  std::vector<double> decode_seconds;  ///< per chunk: decode time measured by the publisher (0 = unknown)
};

struct Manifest {
  ContextId context;
  std::string model_name;
  kv::CacheShape shape;  ///< of the whole context (shape.tokens = its tokens)
  int chunk_tokens = 0;
  std::vector<ChunkRange> chunks;
  std::vector<ManifestLevel> levels;

  /// The level encoded with `config`, or -1.
  int find(const codec::CodecConfig& config) const;
  std::string key(int chunk, int level) const;
  std::string manifest_key() const { return stream::manifest_key(context, chunk_tokens); }
};

/// Serialised form: "KVSM", u32 version (1), u32 CRC32C of the JSON text,
/// then the JSON text (docs/streaming.md gives the fields).
std::vector<std::uint8_t> serialize_manifest(const Manifest& manifest);

/// Parses and validates a manifest: magic, version, CRC, every field's type
/// and range, chunks covering [0, tokens) in order, one size, CRC and decode
/// time per chunk and level. Error(Format | Checksum | Unsupported) naming
/// `source` (e.g. the key) on any problem.
Manifest parse_manifest(std::span<const std::uint8_t> bytes, const std::string& source);

/// The manifest of `context` for the given levels (all must be prepared).
/// Error(InvalidArgument) for a level not prepared or a cache without token ids.
Manifest make_manifest(const EncodedContext& context, std::span<const LadderLevel> levels);

struct PublishReport {
  Manifest manifest;  ///< as written (merged with levels already published)
  std::size_t values = 0;
  std::size_t bytes = 0;
  double seconds = 0;
};

/// Writes every chunk of `levels` and then the manifest. Levels published
/// earlier for the same context and chunking stay listed. Errors: the store's (a full store is Error(Io)
/// naming the key), Error(Cancelled) from progress (nothing written after that point; the manifest is not
/// updated).
PublishReport publish(const EncodedContext& context, std::span<const LadderLevel> levels, ChunkStore& store,
                      const ProgressFn& progress = {});

/// The manifest of a context, or nullopt when the store has none for this
/// chunking. Error(Format | Checksum) naming the key when it is corrupt.
std::optional<Manifest> load_manifest(ChunkStore& store, const ContextId& context, int chunk_tokens);

/// Fetches chunk `chunk` at manifest level `level` and checks it: present
/// (Error(Io) "missing ... (evicted or removed?)" naming the key), the
/// manifest's length and CRC32C (Error(Checksum) naming the key), and a
/// well-formed bitstream whose every section CRC holds and whose shape is
/// the chunk's (Error(Format | Checksum) naming the key). Never returns
/// bytes that fail a check.
std::vector<std::uint8_t> fetch_chunk(ChunkStore& store, const Manifest& manifest, int chunk, int level,
                                      const ReadPacer& pace = {}, FetchStats* stats = nullptr);

}  // namespace kvscope::stream
