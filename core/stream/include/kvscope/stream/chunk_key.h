// SPDX-License-Identifier: Apache-2.0
#pragma once

// Names of a context's encoded chunks in a chunk store (docs/streaming.md,
// "Key scheme"). A context is identified by the model that computed its KV
// and the token ids of the prefix it covers; each chunk of it by its token
// range and the codec configuration (level) that encoded it:
//
//   kvscope:1:{<model>.<prefix>}:<begin>-<end>:<level>      a chunk's bitstream
//   kvscope:1:{<model>.<prefix>}:manifest:<chunk_tokens>    the context's manifest
//
// <model> is 16 hex digits, <prefix> 32, <level> 12. The braces are a Redis
// Cluster hash tag: every key of one context hashes to the same slot, so a
// context lives on one node and moves between nodes as a unit.

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "kvscope/codec/codec.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::stream {

/// Key scheme version written into every key.
inline constexpr int kKeySchemeVersion = 1;

/// The identity of a context in a store.
struct ContextId {
  std::string model_hash;   ///< 16 lowercase hex digits
  std::string prefix_hash;  ///< 32 lowercase hex digits
  bool operator==(const ContextId&) const = default;
};

/// 16 hex digits naming the model: the first 16 of its file's SHA-256 when
/// `info.model_sha256` is set, otherwise XXH3-64 of "name|architecture|
/// layers|kv_heads|head_dim" (weaker: two files of one model share it).
std::string model_hash(const kv::CacheInfo& info, const kv::CacheShape& shape);

/// XXH3-128 of the token ids (little-endian int32), 32 hex digits.
std::string prefix_hash(std::span<const std::int32_t> token_ids);

/// 12 hex digits naming a codec configuration (XXH3-64 of config_key()).
std::string level_id(const codec::CodecConfig& config);

/// XXH3-128 (seed 1, so it never equals a prefix_hash) of a cache's float32
/// values, 32 hex digits: the name of a context whose tokens are unknown.
std::string content_hash(const kv::KVCache& cache);

/// The context of a cache: model_hash(info, shape) and prefix_hash(info.token_ids),
/// or content_hash(cache) when it carries no token ids (a raw cache from
/// elsewhere: found again only from the same values).
ContextId context_id(const kv::KVCache& cache);
/// The same from the cache's description alone (a receiver that has the
/// tokens and the model but not the KV yet); shape.tokens must equal the
/// number of token ids (else Error(InvalidArgument)).
ContextId context_id(const kv::CacheInfo& info, const kv::CacheShape& shape);

/// "kvscope:1:{model.prefix}:" -- every key of the context starts with it.
std::string context_prefix(const ContextId& id);
/// The key of tokens [begin, end) encoded at `level` (a level_id()).
std::string chunk_key(const ContextId& id, int begin, int end, const std::string& level);
/// The key of the context's manifest for a chunking of `chunk_tokens`.
std::string manifest_key(const ContextId& id, int chunk_tokens);

/// A key taken apart (what `kvscope-cli store ls` shows).
struct ParsedKey {
  ContextId context;
  bool manifest = false;
  int chunk_tokens = 0;  ///< manifest keys
  int begin = 0, end = 0;
  std::string level;  ///< chunk keys
};
/// Parses a key of the scheme above; nullopt for any other string.
std::optional<ParsedKey> parse_key(const std::string& key);

/// The Redis Cluster hash slot of a key (CRC16-XMODEM of its hash tag, or of
/// the whole key when it has none, mod 16384), per the cluster specification.
int cluster_slot(const std::string& key);

}  // namespace kvscope::stream
