#pragma once

// A context's cache split into chunks of consecutive tokens, each encoded
// independently at every level it may be sent at. Encodings are computed once
// and kept, so changing the bandwidth profile, the SLO or the policy never
// re-encodes (docs/architecture.md, "Rules": expensive stages are cached).

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
};

struct PrepareOptions {
  /// Worker threads encoding (chunk, level) pairs in parallel (0 = all).
  int threads = 0;
  /// Also decode chunk 0 of each new level once and time it: the policy's
  /// decode-time estimate for that level.
  bool measure_decode = true;
  /// Called from worker threads; false cancels (Error(Cancelled)); pairs
  /// already encoded are kept.
  ProgressFn progress;
};

/// The encoded chunks of one cache. Thread-safe: prepare() may run on a
/// worker while other threads read entries already present.
class ChunkStore {
 public:
  /// Keeps `cache` (shared, never copied). Error(InvalidArgument) when the
  /// cache is empty or chunk_tokens <= 0.
  ChunkStore(std::shared_ptr<const kv::KVCache> cache, int chunk_tokens = 1024);

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
  /// Decode seconds of chunk 0 at `config` measured by prepare(), scaled per
  /// token so it applies to any chunk: seconds per token. 0 when not measured.
  double decode_seconds_per_token(const codec::CodecConfig& config) const;

  /// Token ids of chunk `chunk` (the cache's info.token_ids); empty when the
  /// cache carries no token ids (text recompute then impossible).
  std::vector<std::int32_t> chunk_token_ids(int chunk) const;

 private:
  struct Level {
    std::vector<std::unique_ptr<EncodedChunk>> chunks;  // null = not encoded yet
    double decode_seconds_per_token = 0;
  };
  std::shared_ptr<const kv::KVCache> cache_;
  int chunk_tokens_;
  std::vector<ChunkRange> chunks_;
  mutable std::mutex mutex_;
  std::map<std::string, Level> levels_;  // by config_key()
};

}  // namespace kvscope::stream
