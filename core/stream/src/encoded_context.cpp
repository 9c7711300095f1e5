// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/encoded_context.h"

#include <atomic>
#include <chrono>

#include "kvscope/common/error.h"
#include "kvscope/common/thread_pool.h"
#include "kvscope/stream/ladder.h"

namespace kvscope::stream {

std::vector<ChunkRange> split_into_chunks(int tokens, int chunk_tokens) {
  require(tokens > 0, ErrorCode::InvalidArgument, "cannot split an empty context into chunks");
  require(chunk_tokens > 0, ErrorCode::InvalidArgument, "chunk size must be at least one token");
  std::vector<ChunkRange> out;
  for (int b = 0; b < tokens; b += chunk_tokens)
    out.push_back({static_cast<int>(out.size()), b, std::min(tokens, b + chunk_tokens)});
  return out;
}

EncodedContext::EncodedContext(std::shared_ptr<const kv::KVCache> cache, int chunk_tokens)
    : cache_(std::move(cache)), chunk_tokens_(chunk_tokens) {
  require(cache_ && !cache_->empty() && cache_->shape().tokens > 0, ErrorCode::InvalidArgument,
          "cannot stream an empty KV cache");
  chunks_ = split_into_chunks(cache_->shape().tokens, chunk_tokens);
}

void EncodedContext::prepare(std::span<const codec::CodecConfig> configs, const PrepareOptions& options) {
  // Collect the missing (level, chunk) pairs.
  struct Item {
    std::string key;
    const codec::CodecConfig* config;
    int chunk;
  };
  std::vector<Item> todo;
  {
    std::lock_guard lock(mutex_);
    for (const auto& config : configs) {
      const std::string key = config_key(config);
      auto& level = levels_[key];
      level.config = config;
      level.chunks.resize(chunks_.size());
      for (std::size_t c = 0; c < chunks_.size(); ++c)
        if (!level.chunks[c] && std::none_of(todo.begin(), todo.end(), [&](const Item& it) {
              return it.key == key && it.chunk == static_cast<int>(c);
            }))
          todo.push_back({key, &config, static_cast<int>(c)});
    }
  }
  std::atomic<std::size_t> done{0};
  report_progress(options.progress, 0.0, "encoding chunks");
  // One codec call per pair, each single-threaded: pairs are many and
  // independent, so this keeps every worker busy without nested pools.
  parallel_for(todo.size(), options.threads, [&](std::size_t i) {
    const Item& item = todo[i];
    const ChunkRange& r = chunks_[item.chunk];
    const kv::KVCache slice = cache_->slice_tokens(r.begin, r.end);
    codec::EncodeOptions eo;
    eo.threads = 1;
    auto result = codec::encode(slice, *item.config, eo);
    auto entry = std::make_unique<EncodedChunk>();
    entry->bytes = std::move(result.bytes);
    entry->size = result.size;
    entry->encode_seconds = result.seconds;
    {
      std::lock_guard lock(mutex_);
      levels_[item.key].chunks[item.chunk] = std::move(entry);
    }
    const std::size_t n = ++done;
    report_progress(options.progress, double(n) / double(todo.size()),
                    "encoding chunk " + std::to_string(item.chunk + 1) + "/" +
                        std::to_string(chunks_.size()) + " at " + item.config->codec);
  });
  if (!options.measure_decode) return;
  // Every chunk and level is timed, one at a time (not beside the encoders,
  // whose load would inflate the times): sizes and contents differ per
  // chunk, and so does the decode time the policy must predict.
  for (std::size_t i = 0; i < todo.size(); ++i) {
    EncodedChunk* entry;
    {
      std::lock_guard lock(mutex_);
      entry = levels_[todo[i].key].chunks[todo[i].chunk].get();
    }
    report_progress(
        options.progress, 1.0,
        "timing decode of chunk " + std::to_string(todo[i].chunk + 1) + " at " + todo[i].config->codec);
    codec::DecodeOptions dopt;
    dopt.threads = options.decode_threads;
    const auto t0 = std::chrono::steady_clock::now();
    (void)codec::decode(entry->bytes, dopt);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::lock_guard lock(mutex_);
    entry->decode_seconds = s;
  }
}

bool EncodedContext::has(const codec::CodecConfig& config) const {
  std::lock_guard lock(mutex_);
  auto it = levels_.find(config_key(config));
  if (it == levels_.end()) return false;
  for (const auto& c : it->second.chunks)
    if (!c) return false;
  return true;
}

const EncodedChunk& EncodedContext::get(int chunk, const codec::CodecConfig& config) const {
  require(chunk >= 0 && chunk < static_cast<int>(chunks_.size()), ErrorCode::InvalidArgument,
          "chunk index " + std::to_string(chunk) + " out of range");
  std::lock_guard lock(mutex_);
  auto it = levels_.find(config_key(config));
  require(it != levels_.end() && it->second.chunks[chunk] != nullptr, ErrorCode::InvalidArgument,
          "chunk " + std::to_string(chunk) + " was not encoded at " + config_key(config));
  return *it->second.chunks[chunk];
}

double EncodedContext::decode_seconds_per_token(const codec::CodecConfig& config) const {
  std::lock_guard lock(mutex_);
  auto it = levels_.find(config_key(config));
  if (it == levels_.end()) return 0.0;
  double seconds = 0;
  int tokens = 0;
  for (std::size_t c = 0; c < it->second.chunks.size(); ++c) {
    if (!it->second.chunks[c] || it->second.chunks[c]->decode_seconds <= 0) continue;
    seconds += it->second.chunks[c]->decode_seconds;
    tokens += chunks_[c].tokens();
  }
  return tokens > 0 ? seconds / tokens : 0.0;
}

std::vector<codec::CodecConfig> EncodedContext::configs() const {
  std::lock_guard lock(mutex_);
  std::vector<codec::CodecConfig> out;
  for (const auto& [key, level] : levels_) out.push_back(level.config);
  return out;
}

std::vector<std::int32_t> EncodedContext::chunk_token_ids(int chunk) const {
  const auto& ids = cache_->info.token_ids;
  const ChunkRange& r = chunks_.at(chunk);
  if (static_cast<int>(ids.size()) != cache_->shape().tokens) return {};
  return {ids.begin() + r.begin, ids.begin() + r.end};
}

}  // namespace kvscope::stream
