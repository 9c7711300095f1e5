// SPDX-License-Identifier: Apache-2.0
#pragma once

// The sender process of the plain-TCP mode (`kvscope-cli serve`): serves a
// chunk store's values to receivers over TCP, one request at a time per
// connection (docs/streaming.md, "Sender process"). Receivers open it as the
// store "tcp://HOST:PORT" and pace their reads of its replies with the
// bandwidth trace, exactly as they pace reads from Redis.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kvscope/stream/chunk_store.h"

namespace kvscope::stream {

/// Deliberate damage to the bytes a server writes, for tests of the
/// receiver's error paths. Offsets count the bytes written on each
/// connection, reply headers included.
struct ServerFault {
  std::int64_t corrupt_at = -1;  ///< flip the bits of the byte at this offset
  std::int64_t cut_after = -1;   ///< close the connection after this many bytes
};

struct ServerOptions {
  std::string bind = "127.0.0.1";  ///< address to listen on
  int port = 0;                    ///< 0 = any free port (see port())
  ServerFault fault;
  /// Called (from connection threads, serialised) for every request:
  /// "GET" or "LIST" and the key or prefix. May be empty.
  std::function<void(const std::string& verb, const std::string& key)> on_request;
};

class ChunkServer {
 public:
  /// Listens and serves on background threads (one per connection) until
  /// stop() or destruction. `store` is read under a lock, so a store that is
  /// not thread-safe (Redis) is fine. Error(Network) when it cannot listen.
  ChunkServer(std::shared_ptr<ChunkStore> store, const ServerOptions& options = {});
  ~ChunkServer();
  ChunkServer(const ChunkServer&) = delete;
  ChunkServer& operator=(const ChunkServer&) = delete;

  int port() const;
  /// "HOST:PORT" it listens on.
  std::string address() const;
  /// Requests served so far.
  std::uint64_t requests() const;
  /// Stops accepting, closes every connection and joins the threads.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// A read-only store that asks a ChunkServer at HOST:PORT (the "tcp://"
/// spec). put() and remove() are Error(Unsupported). A reply whose payload
/// CRC fails is Error(Checksum) naming the key; a connection that fails is
/// retried (reconnecting) until StoreOptions::retry_timeout_s, then
/// Error(Network) naming the key.
std::unique_ptr<ChunkStore> make_server_client(const std::string& host, int port,
                                               const StoreOptions& options = {});

}  // namespace kvscope::stream
