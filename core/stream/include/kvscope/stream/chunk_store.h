// SPDX-License-Identifier: Apache-2.0
#pragma once

// Chunk stores: where encoded chunks live between the machine that encoded
// them and the receivers that load them (docs/streaming.md, "Stores"). One
// interface, several media:
//   memory:                   in this process (tests, the app's default)
//   dir:PATH                  one file per key in a folder
//   redis://HOST:PORT[,...]   a Redis server or a Redis Cluster (any node(s) as seeds)
//   tcp://HOST:PORT           a `kvscope-cli serve` sender process (read-only)
// Values are stored as they are given (a chunk's bitstream, a manifest):
// checking them is the caller's job (fetch_chunk() in manifest.h), so a
// store never hands out a corrupt chunk as data.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace kvscope::stream {

/// Called by a store after each read of `bytes` more bytes of a value from its
/// medium (socket, file, memory), before reading on: the receiver's token
/// bucket, which blocks until the bandwidth trace has delivered them. It may
/// throw to abort the fetch (the store then drops any half-read connection).
using ReadPacer = std::function<void(std::size_t bytes)>;

/// What one get() cost.
struct FetchStats {
  std::size_t wire_bytes = 0;  ///< bytes read from the medium (value plus protocol)
  int attempts = 0;            ///< tries, including redirections and retries after failures
  std::string node;            ///< where the value came from (e.g. "127.0.0.1:7001"), if remote
};

struct StoreOptions {
  /// Remote stores: seconds to keep retrying a failed command (connection
  /// refused or reset, cluster down, slot moving) before giving up with
  /// Error(Network). Each single network operation also times out after this.
  double retry_timeout_s = 5.0;
  /// Largest read from the medium at once; the pacer is called after each.
  std::size_t read_bytes = 64 * 1024;
};

/// A key-value store of chunk bitstreams. Keys are printable ASCII without
/// spaces or '/' (chunk_key.h makes them). An instance is used by one thread
/// at a time unless its type says otherwise; open one per receiver.
class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  /// What and where, e.g. "redis://127.0.0.1:7000 (cluster, 3 masters)".
  virtual std::string describe() const = 0;

  /// Stores `value` under `key`, replacing an existing value. Never silent:
  /// Error(Io) naming the key when the store refuses (full, read-only,
  /// unwritable), Error(Network) when it cannot be reached.
  virtual void put(const std::string& key, std::span<const std::uint8_t> value) = 0;

  /// The value of `key`, or nullopt when the store does not hold it (never
  /// put, removed or evicted). `pace` (may be empty) is called as the value's
  /// bytes are read. Error(Network | Io) naming the key when the store cannot
  /// be read; Error(Format) when its reply is malformed.
  virtual std::optional<std::vector<std::uint8_t>> get(const std::string& key, const ReadPacer& pace = {},
                                                       FetchStats* stats = nullptr) = 0;

  /// Removes `key`; whether it was there. Errors as put().
  virtual bool remove(const std::string& key) = 0;

  /// Every key starting with `prefix`, sorted. Errors as get().
  virtual std::vector<std::string> list(const std::string& prefix) = 0;
};

/// Opens a store from its spec (the forms above; "dir:" creates the folder).
/// Error(InvalidArgument) naming the spec when it is malformed;
/// Error(Network) when a remote store cannot be reached.
std::unique_ptr<ChunkStore> open_store(const std::string& spec, const StoreOptions& options = {});

/// An empty in-memory store. Safe to use from several threads at once.
std::unique_ptr<ChunkStore> make_memory_store(const StoreOptions& options = {});

/// A store keeping one file per key in `folder` (created when missing);
/// files are written atomically. Safe to use from several threads at once.
/// Error(Io) naming the folder when it cannot be created.
std::unique_ptr<ChunkStore> make_folder_store(const std::string& folder, const StoreOptions& options = {});

/// Error(InvalidArgument) naming the key unless it is 1..512 printable ASCII
/// characters without spaces or '/'.
void check_key(const std::string& key);

}  // namespace kvscope::stream
