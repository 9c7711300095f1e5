// SPDX-License-Identifier: Apache-2.0
#pragma once

// A context's cache split into chunks of consecutive tokens, each encoded
// independently at every level it may be sent at: what a sender publishes to
// a chunk store (manifest.h). Encodings are computed once and kept, so
// changing the bandwidth trace, the SLO or the policy never re-encodes.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::stream {

/// Tokens [begin, end) of the context.
struct ChunkRange {
  int index = 0;
  int begin = 0;
  int end = 0;
  int tokens() const { return end - begin; }
};

/// Splits `tokens` tokens into chunks of `chunk_tokens` (the last may be
/// shorter). Error(InvalidArgument) when tokens <= 0 or chunk_tokens <= 0.
std::vector<ChunkRange> split_into_chunks(int tokens, int chunk_tokens);

/// One chunk encoded at one level.
struct EncodedChunk {
  std::vector<std::uint8_t> bytes;  ///< the bitstream
  codec::SizeReport size;
  double encode_seconds = 0;
  /// Seconds one decode of this chunk took here (PrepareOptions::measure_decode),
  /// 0 when not measured.
  double decode_seconds = 0;
};

struct PrepareOptions {
  /// Worker threads encoding (chunk, level) pairs in parallel (0 = all).
  int threads = 0;
  /// Also decode every new (chunk, level) once and time it: the policy's
  /// decode-time estimates, per chunk and level.
  bool measure_decode = true;
  /// Codec threads for those timed decodes (0 = all): set it to what the
  /// receiver will use, so the estimates match its decodes.
  int decode_threads = 0;
  /// Called from worker threads; false cancels (Error(Cancelled)); pairs
  /// already encoded are kept.
  ProgressFn progress;
};

/// The encoded chunks of one cache. Thread-safe: prepare() may run on a
/// worker while other threads read entries already present.
class EncodedContext {
 public:
  /// Keeps `cache` (shared, never copied). Error(InvalidArgument) when the
  /// cache is empty or chunk_tokens <= 0.
  EncodedContext(std::shared_ptr<const kv::KVCache> cache, int chunk_tokens = 1024);

  const kv::KVCache& cache() const { return *cache_; }
  std::shared_ptr<const kv::KVCache> shared_cache() const { return cache_; }
  int chunk_tokens() const { return chunk_tokens_; }
  const std::vector<ChunkRange>& chunks() const { return chunks_; }

  /// Encodes every (chunk, config) pair not encoded yet. Errors: the codec's
  /// Error(InvalidArgument) naming a bad parameter; Error(Cancelled).
  void prepare(std::span<const codec::CodecConfig> configs, const PrepareOptions& options = {});

  /// Whether every chunk has been encoded with `config`.
  bool has(const codec::CodecConfig& config) const;
  /// Chunk `chunk` at `config`. Error(InvalidArgument) when not prepared or
  /// the chunk index is out of range. The reference stays valid for the
  /// store's lifetime.
  const EncodedChunk& get(int chunk, const codec::CodecConfig& config) const;
  /// Decode seconds per token at `config`: the measured decode times of all
  /// its chunks over their tokens. 0 when not measured.
  double decode_seconds_per_token(const codec::CodecConfig& config) const;
  /// Every config encoded so far (complete or not).
  std::vector<codec::CodecConfig> configs() const;

  /// Token ids of chunk `chunk` (the cache's info.token_ids); empty when the
  /// cache carries no token ids (text recompute then impossible).
  std::vector<std::int32_t> chunk_token_ids(int chunk) const;

 private:
  struct Level {
    codec::CodecConfig config;
    std::vector<std::unique_ptr<EncodedChunk>> chunks;  // null = not encoded yet
  };
  std::shared_ptr<const kv::KVCache> cache_;
  int chunk_tokens_;
  std::vector<ChunkRange> chunks_;
  mutable std::mutex mutex_;
  std::map<std::string, Level> levels_;  // by config_key()
};

}  // namespace kvscope::stream
