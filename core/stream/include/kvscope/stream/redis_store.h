// SPDX-License-Identifier: Apache-2.0
#pragma once

// A chunk store in Redis: one server, or a Redis Cluster (docs/streaming.md,
// "Redis"). Built on hiredis, which speaks the protocol but knows nothing of
// clusters, so the cluster client is here, per the Redis Cluster
// specification: keys are routed by hash slot (chunk_key.h's cluster_slot())
// with the slot map read from CLUSTER SLOTS; a MOVED reply updates the map
// and retries on the named node; an ASK reply retries once on the named
// node after ASKING, leaving the map alone; TRYAGAIN, CLUSTERDOWN, LOADING
// and dropped connections are retried (reconnecting and re-reading the slot
// map) until StoreOptions::retry_timeout_s has passed, then the command
// fails with Error(Network) naming the key: slow, never hung.

#include <memory>
#include <string>
#include <vector>

#include "kvscope/stream/chunk_store.h"

namespace kvscope::stream {

struct RedisEndpoint {
  std::string host;
  int port = 6379;
  std::string text() const { return host + ":" + std::to_string(port); }
};

/// Parses "redis://HOST:PORT[,HOST:PORT...]" (the port defaults to 6379).
/// Error(InvalidArgument) naming the spec when malformed.
std::vector<RedisEndpoint> parse_redis_spec(const std::string& spec);

class RedisChunkStore final : public ChunkStore {
 public:
  /// Connects to the first seed that answers and asks it for CLUSTER SLOTS:
  /// a cluster when it has them, a single server when cluster support is
  /// disabled. Error(Network) when no seed answers within the retry timeout.
  RedisChunkStore(std::vector<RedisEndpoint> seeds, const StoreOptions& options = {});
  ~RedisChunkStore() override;

  std::string describe() const override;
  void put(const std::string& key, std::span<const std::uint8_t> value) override;
  std::optional<std::vector<std::uint8_t>> get(const std::string& key, const ReadPacer& pace = {},
                                               FetchStats* stats = nullptr) override;
  bool remove(const std::string& key) override;
  std::vector<std::string> list(const std::string& prefix) override;

  bool is_cluster() const;
  /// "HOST:PORT" of each master (one entry for a single server).
  std::vector<std::string> masters() const;
  /// "HOST:PORT" of the master the client currently routes `key` to.
  std::string node_for(const std::string& key) const;

  /// What the client has had to do so far (tests and reports).
  struct Counters {
    int moved = 0;         ///< MOVED redirections followed
    int ask = 0;           ///< ASK redirections followed
    int retries = 0;       ///< commands retried after a failure or a transient error
    int slot_reloads = 0;  ///< CLUSTER SLOTS reads after the first
  };
  Counters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope::stream
