// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/redis_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "kvscope/common/error.h"
#include "kvscope/stream/chunk_key.h"

namespace kvscope::stream {
namespace {

using Clock = std::chrono::steady_clock;

/// A connection failed or timed out: retried by the caller until its deadline.
struct NetFailure {
  std::string what;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};

timeval to_timeval(double s) {
  timeval tv{};
  tv.tv_sec = static_cast<long>(s);
  tv.tv_usec = static_cast<long>((s - double(tv.tv_sec)) * 1e6);
  return tv;
}

bool parse_port(std::string_view s, int& port) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), port);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && port > 0 && port < 65536;
}

/// "HOST:PORT" -> endpoint (the last ':' splits, so "::1:7000" would parse).
std::optional<RedisEndpoint> parse_endpoint(std::string_view s) {
  const auto colon = s.rfind(':');
  RedisEndpoint e;
  if (colon == std::string_view::npos) {
    e.host = std::string(s);
  } else {
    e.host = std::string(s.substr(0, colon));
    if (!parse_port(s.substr(colon + 1), e.port)) return std::nullopt;
  }
  if (e.host.empty()) return std::nullopt;
  return e;
}

std::string reply_text(const redisReply* r) {
  return r && r->str ? std::string(r->str, r->len) : std::string();
}

/// One connection to one node.
class Connection {
 public:
  Connection(RedisEndpoint at, const StoreOptions& options) : at_(std::move(at)), options_(options) {}

  const RedisEndpoint& endpoint() const { return at_; }
  void reset() { ctx_.reset(); }

  /// Sends the commands (pipelined) and returns their replies in order.
  /// Pacing applies to every byte read. Throws NetFailure on connection
  /// trouble (the connection is dropped) and Error(Format) on a malformed
  /// reply.
  std::vector<Reply> run(const std::vector<std::vector<std::string_view>>& commands, const ReadPacer& pace,
                         std::size_t* wire) {
    connect();
    try {
      for (const auto& argv : commands) {
        std::vector<const char*> ptrs;
        std::vector<std::size_t> lens;
        for (auto a : argv) {
          ptrs.push_back(a.data());
          lens.push_back(a.size());
        }
        if (redisAppendCommandArgv(ctx_.get(), int(ptrs.size()), ptrs.data(), lens.data()) != REDIS_OK)
          fail("cannot queue a command");
      }
      int done = 0;
      while (!done)
        if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) fail("send failed");
      std::vector<Reply> replies;
      std::vector<char> buf(options_.read_bytes);
      while (replies.size() < commands.size()) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(ctx_.get(), &raw) != REDIS_OK) {
          const std::string why = ctx_->errstr;
          reset();
          throw Error(ErrorCode::Format, at_.text() + ": malformed reply: " + why);
        }
        if (raw) {
          replies.emplace_back(static_cast<redisReply*>(raw));
          continue;
        }
        const std::size_t n = read_some(buf);
        if (redisReaderFeed(ctx_->reader, buf.data(), n) != REDIS_OK) fail("reader refused data");
        if (wire) *wire += n;
        if (pace) pace(n);
      }
      return replies;
    } catch (...) {
      // A half-read reply would poison the next command: start afresh.
      reset();
      throw;
    }
  }

 private:
  void connect() {
    if (ctx_) return;
    const timeval tv = to_timeval(std::max(0.05, options_.retry_timeout_s));
    ctx_.reset(redisConnectWithTimeout(at_.host.c_str(), at_.port, tv));
    if (!ctx_) throw NetFailure{"cannot allocate a connection to " + at_.text()};
    if (ctx_->err) {
      const std::string why = ctx_->errstr;
      reset();
      throw NetFailure{"cannot connect to " + at_.text() + ": " + why};
    }
    redisSetTimeout(ctx_.get(), tv);
  }

  [[noreturn]] void fail(const std::string& what) {
    const std::string why = ctx_ && ctx_->err ? std::string(": ") + ctx_->errstr : std::string();
    reset();
    throw NetFailure{at_.text() + ": " + what + why};
  }

  std::size_t read_some(std::vector<char>& buf) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options_.retry_timeout_s));
    for (;;) {
      pollfd p{ctx_->fd, POLLIN, 0};
      const int r = ::poll(&p, 1, 50);
      if (r < 0 && errno != EINTR) fail(std::string("poll failed: ") + std::strerror(errno));
      if (r > 0) {
        const ssize_t n = ::recv(ctx_->fd, buf.data(), buf.size(), 0);
        if (n > 0) return static_cast<std::size_t>(n);
        if (n == 0) fail("connection closed by the server");
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
          fail(std::string("receive failed: ") + std::strerror(errno));
      }
      if (Clock::now() > deadline) fail("no reply within the timeout");
    }
  }

  RedisEndpoint at_;
  const StoreOptions& options_;
  std::unique_ptr<redisContext, ContextDeleter> ctx_;
};

std::string glob_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

bool starts_with(const std::string& s, const char* p) {
  return s.rfind(p, 0) == 0;
}

}  // namespace

std::vector<RedisEndpoint> parse_redis_spec(const std::string& spec) {
  const std::string scheme = "redis://";
  require(spec.rfind(scheme, 0) == 0, ErrorCode::InvalidArgument,
          "store '" + spec + "': expected redis://HOST:PORT[,HOST:PORT...]");
  std::vector<RedisEndpoint> out;
  std::string_view rest(spec);
  rest.remove_prefix(scheme.size());
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto part = rest.substr(0, comma);
    auto e = parse_endpoint(part);
    require(e.has_value(), ErrorCode::InvalidArgument,
            "store '" + spec + "': '" + std::string(part) + "' is not HOST:PORT");
    out.push_back(*e);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  require(!out.empty(), ErrorCode::InvalidArgument, "store '" + spec + "': no HOST:PORT given");
  return out;
}

struct RedisChunkStore::Impl {
  StoreOptions options;
  std::vector<RedisEndpoint> seeds;
  bool cluster = false;
  // Cluster: node text -> connection; slot -> node text (empty = unknown).
  std::map<std::string, std::unique_ptr<Connection>> connections;
  std::vector<std::string> slot_node = std::vector<std::string>(16384);
  std::vector<std::string> master_list;
  RedisEndpoint single;  // the server when not a cluster
  Counters counters;
  bool slots_stale = false;

  Connection& connection(const std::string& node) {
    auto& c = connections[node];
    if (!c) {
      auto e = parse_endpoint(node);
      require(e.has_value(), ErrorCode::Format, "redis: bad node address '" + node + "' in a reply");
      c = std::make_unique<Connection>(*e, options);
    }
    return *c;
  }

  std::vector<std::string> candidates() const {
    std::vector<std::string> out;
    for (const auto& m : master_list) out.push_back(m);
    for (const auto& s : seeds)
      if (std::find(out.begin(), out.end(), s.text()) == out.end()) out.push_back(s.text());
    return out;
  }

  /// Reads CLUSTER SLOTS from the first node that answers. Sets `cluster`
  /// on the first call. Throws NetFailure when no node answers.
  void load_slots(bool first) {
    std::string last_error = "no node to ask";
    for (const auto& node : candidates()) {
      Reply r;
      try {
        auto replies = connection(node).run({{"CLUSTER", "SLOTS"}}, {}, nullptr);
        r = std::move(replies[0]);
      } catch (const NetFailure& f) {
        last_error = f.what;
        continue;
      }
      if (r->type == REDIS_REPLY_ERROR) {
        const std::string text = reply_text(r.get());
        if (first && text.find("cluster support disabled") != std::string::npos) {
          cluster = false;
          single = *parse_endpoint(node);
          master_list = {node};
          return;
        }
        last_error = node + ": " + text;
        continue;
      }
      require(r->type == REDIS_REPLY_ARRAY, ErrorCode::Format,
              node + ": CLUSTER SLOTS reply is not an array");
      const std::string asked_host = parse_endpoint(node)->host;
      std::vector<std::string> map(16384);
      std::set<std::string> masters;
      for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        require(e->type == REDIS_REPLY_ARRAY && e->elements >= 3 &&
                    e->element[0]->type == REDIS_REPLY_INTEGER &&
                    e->element[1]->type == REDIS_REPLY_INTEGER && e->element[2]->type == REDIS_REPLY_ARRAY &&
                    e->element[2]->elements >= 2,
                ErrorCode::Format, node + ": malformed CLUSTER SLOTS entry");
        const long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply* m = e->element[2];
        require(lo >= 0 && hi < 16384 && lo <= hi && m->element[0]->type == REDIS_REPLY_STRING &&
                    m->element[1]->type == REDIS_REPLY_INTEGER,
                ErrorCode::Format, node + ": malformed CLUSTER SLOTS entry");
        std::string host = reply_text(m->element[0]);
        // An empty or unknown endpoint means "the host you asked" (Redis 7).
        if (host.empty() || host == "?") host = asked_host;
        const std::string master = host + ":" + std::to_string(m->element[1]->integer);
        masters.insert(master);
        for (long long s = lo; s <= hi; ++s) map[static_cast<std::size_t>(s)] = master;
      }
      cluster = true;
      slot_node = std::move(map);
      master_list.assign(masters.begin(), masters.end());
      if (!first) ++counters.slot_reloads;
      slots_stale = false;
      return;
    }
    throw NetFailure{"no Redis node answered CLUSTER SLOTS (" + last_error + ")"};
  }

  std::string route(const std::string& key) const {
    if (!cluster) return single.text();
    const std::string& n = slot_node[static_cast<std::size_t>(cluster_slot(key))];
    if (!n.empty()) return n;
    return master_list.empty() ? seeds.front().text() : master_list.front();
  }

  /// Runs a one-key command on the node serving `key`, following
  /// redirections and retrying transient failures until the deadline.
  Reply run_keyed(const std::string& key, const std::vector<std::string_view>& argv, const char* verb,
                  const ReadPacer& pace, FetchStats* stats) {
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options.retry_timeout_s));
    std::string node = route(key);
    bool asking = false;
    int attempts = 0, redirects = 0;
    std::string last_error;
    auto backoff = std::chrono::milliseconds(20);
    for (;;) {
      ++attempts;
      if (stats) stats->attempts = attempts;
      try {
        if (cluster && slots_stale && !asking) {
          load_slots(false);
          node = route(key);
        }
        std::vector<std::vector<std::string_view>> cmds;
        if (asking) cmds.push_back({"ASKING"});
        cmds.push_back(argv);
        std::size_t wire = 0;
        auto replies = connection(node).run(cmds, pace, &wire);
        if (stats) {
          stats->wire_bytes += wire;
          stats->node = node;
        }
        Reply r = std::move(replies.back());
        asking = false;
        if (r->type != REDIS_REPLY_ERROR) return r;
        const std::string text = reply_text(r.get());
        if (cluster && (starts_with(text, "MOVED ") || starts_with(text, "ASK "))) {
          // "MOVED <slot> <host:port>" / "ASK <slot> <host:port>"
          const auto sp = text.rfind(' ');
          std::string target = text.substr(sp + 1);
          auto e = parse_endpoint(target);
          require(e.has_value(), ErrorCode::Format, node + ": bad redirection '" + text + "'");
          if (e->host.empty()) e->host = parse_endpoint(node)->host;
          target = e->text();
          require(++redirects <= 16, ErrorCode::Network,
                  "redis: " + std::string(verb) + " " + key + ": too many redirections (last: " + text + ")");
          if (text[0] == 'M') {
            ++counters.moved;
            slot_node[static_cast<std::size_t>(cluster_slot(key))] = target;
            slots_stale = true;  // several slots probably moved: re-read the map before the next command
          } else {
            ++counters.ask;
            asking = true;
          }
          node = target;
          continue;
        }
        if (starts_with(text, "TRYAGAIN") || starts_with(text, "CLUSTERDOWN") ||
            starts_with(text, "LOADING") || starts_with(text, "MASTERDOWN")) {
          last_error = node + ": " + text;
          slots_stale = cluster;
        } else {
          return r;  // a real error: the caller words it
        }
      } catch (const NetFailure& f) {
        last_error = f.what;
        slots_stale = cluster;
        asking = false;
      }
      // Transient: wait and try again until the deadline.
      if (Clock::now() + backoff > deadline) {
        const double waited = std::chrono::duration<double>(Clock::now() - start).count();
        throw Error(ErrorCode::Network, "redis: " + std::string(verb) + " " + key + " failed after " +
                                            std::to_string(attempts) + " attempts over " +
                                            std::to_string(waited).substr(0, 4) + " s: " + last_error);
      }
      ++counters.retries;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(250));
      if (cluster) {
        try {
          load_slots(false);
        } catch (const NetFailure& f) {
          last_error = f.what;
        }
      }
      node = route(key);
    }
  }
};

RedisChunkStore::RedisChunkStore(std::vector<RedisEndpoint> seeds, const StoreOptions& options)
    : impl_(std::make_unique<Impl>()) {
  require(!seeds.empty(), ErrorCode::InvalidArgument, "redis store needs at least one HOST:PORT");
  impl_->options = options;
  impl_->seeds = std::move(seeds);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(options.retry_timeout_s));
  for (;;) {
    try {
      impl_->load_slots(true);
      return;
    } catch (const NetFailure& f) {
      if (Clock::now() > deadline) throw Error(ErrorCode::Network, "redis: " + f.what);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

RedisChunkStore::~RedisChunkStore() = default;

std::string RedisChunkStore::describe() const {
  std::string seeds;
  for (const auto& s : impl_->seeds) seeds += (seeds.empty() ? "" : ",") + s.text();
  if (!impl_->cluster) return "redis://" + seeds + " (single server)";
  return "redis://" + seeds + " (cluster, " + std::to_string(impl_->master_list.size()) + " masters)";
}

void RedisChunkStore::put(const std::string& key, std::span<const std::uint8_t> value) {
  check_key(key);
  const std::string_view v(reinterpret_cast<const char*>(value.data()), value.size());
  Reply r = impl_->run_keyed(key, {"SET", key, v}, "SET", {}, nullptr);
  if (r->type == REDIS_REPLY_STATUS && reply_text(r.get()) == "OK") return;
  // e.g. "OOM command not allowed when used memory > 'maxmemory'": a full
  // store is an error, never a silent drop.
  throw Error(ErrorCode::Io, describe() + ": cannot put " + key + ": " +
                                 (r->type == REDIS_REPLY_ERROR ? reply_text(r.get()) : "unexpected reply"));
}

std::optional<std::vector<std::uint8_t>> RedisChunkStore::get(const std::string& key, const ReadPacer& pace,
                                                              FetchStats* stats) {
  check_key(key);
  FetchStats local;
  Reply r = impl_->run_keyed(key, {"GET", key}, "GET", pace, &local);
  if (stats) *stats = local;
  if (r->type == REDIS_REPLY_NIL) return std::nullopt;
  if (r->type == REDIS_REPLY_STRING)
    return std::vector<std::uint8_t>(reinterpret_cast<const std::uint8_t*>(r->str),
                                     reinterpret_cast<const std::uint8_t*>(r->str) + r->len);
  throw Error(ErrorCode::Io,
              describe() + ": cannot get " + key + ": " +
                  (r->type == REDIS_REPLY_ERROR ? reply_text(r.get()) : "unexpected reply type"));
}

bool RedisChunkStore::remove(const std::string& key) {
  check_key(key);
  Reply r = impl_->run_keyed(key, {"DEL", key}, "DEL", {}, nullptr);
  if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0;
  throw Error(ErrorCode::Io, describe() + ": cannot remove " + key + ": " + reply_text(r.get()));
}

std::vector<std::string> RedisChunkStore::list(const std::string& prefix) {
  std::set<std::string> keys;
  const std::string pattern = glob_escape(prefix) + "*";
  for (const auto& node : masters()) {
    std::string cursor = "0";
    do {
      std::vector<Reply> replies;
      try {
        replies =
            impl_->connection(node).run({{"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}}, {}, nullptr);
      } catch (const NetFailure& f) {
        throw Error(ErrorCode::Network, "redis: cannot list keys: " + f.what);
      }
      const redisReply* r = replies[0].get();
      if (r->type == REDIS_REPLY_ERROR)
        throw Error(ErrorCode::Io, "redis " + node + ": SCAN failed: " + reply_text(r));
      require(r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
                  r->element[1]->type == REDIS_REPLY_ARRAY,
              ErrorCode::Format, "redis " + node + ": malformed SCAN reply");
      cursor = reply_text(r->element[0]);
      for (std::size_t i = 0; i < r->element[1]->elements; ++i)
        keys.insert(reply_text(r->element[1]->element[i]));
    } while (cursor != "0");
  }
  return {keys.begin(), keys.end()};
}

bool RedisChunkStore::is_cluster() const {
  return impl_->cluster;
}

std::vector<std::string> RedisChunkStore::masters() const {
  return impl_->master_list;
}

std::string RedisChunkStore::node_for(const std::string& key) const {
  return impl_->route(key);
}

RedisChunkStore::Counters RedisChunkStore::counters() const {
  return impl_->counters;
}

}  // namespace kvscope::stream
