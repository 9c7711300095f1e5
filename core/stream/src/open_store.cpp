// SPDX-License-Identifier: Apache-2.0
#include <charconv>

#include "kvscope/common/error.h"
#include "kvscope/stream/chunk_server.h"
#include "kvscope/stream/chunk_store.h"
#include "kvscope/stream/redis_store.h"

namespace kvscope::stream {

std::unique_ptr<ChunkStore> open_store(const std::string& spec, const StoreOptions& options) {
  const std::string usage = " (stores: memory:, dir:PATH, redis://HOST:PORT[,HOST:PORT...], tcp://HOST:PORT)";
  if (spec == "memory:" || spec == "memory") return make_memory_store(options);
  if (spec.rfind("dir:", 0) == 0) return make_folder_store(spec.substr(4), options);
  if (spec.rfind("redis://", 0) == 0)
    return std::make_unique<RedisChunkStore>(parse_redis_spec(spec), options);
  if (spec.rfind("tcp://", 0) == 0) {
    const std::string rest = spec.substr(6);
    const auto colon = rest.rfind(':');
    int port = 0;
    const bool ok = colon != std::string::npos && colon > 0 &&
                    std::from_chars(rest.data() + colon + 1, rest.data() + rest.size(), port).ptr ==
                        rest.data() + rest.size();
    require(ok, ErrorCode::InvalidArgument, "store '" + spec + "': expected tcp://HOST:PORT");
    return make_server_client(rest.substr(0, colon), port, options);
  }
  throw Error(ErrorCode::InvalidArgument, "unknown store '" + spec + "'" + usage);
}

}  // namespace kvscope::stream
