// SPDX-License-Identifier: Apache-2.0
#pragma once

// Redis servers the tests start and stop themselves on free loopback ports
// (no Redis needs to be running, and none is left running): one server, or
// a Redis Cluster of three masters built with CLUSTER ADDSLOTSRANGE and
// CLUSTER MEET. When redis-server is not installed the tests skip, unless
// KVSCOPE_REQUIRE_REDIS=1 (scripts/run-tests.sh sets it), where that fails.

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.h"

namespace kvscope::stream::testing {

namespace fs = std::filesystem;

/// Why Redis tests cannot run here, or "" when they can.
inline std::string redis_unavailable() {
  if (!find_program("redis-server")) return "redis-server is not installed (Debian: redis-server)";
  return "";
}

#define KVSCOPE_REQUIRE_REDIS_OR_SKIP()                                                          \
  do {                                                                                           \
    const std::string why = ::kvscope::stream::testing::redis_unavailable();                     \
    if (!why.empty()) {                                                                          \
      const char* require = std::getenv("KVSCOPE_REQUIRE_REDIS");                                \
      if (require && std::string(require) == "1") FAIL() << why << " (KVSCOPE_REQUIRE_REDIS=1)"; \
      GTEST_SKIP() << why;                                                                       \
    }                                                                                            \
  } while (0)

/// One reply, as text (arrays joined by newlines), for setup commands.
inline std::string redis_command(const std::string& host, int port, const std::vector<std::string>& argv,
                                 bool* error = nullptr) {
  timeval tv{2, 0};
  std::unique_ptr<redisContext, void (*)(redisContext*)> c(redisConnectWithTimeout(host.c_str(), port, tv),
                                                           redisFree);
  if (!c || c->err) {
    if (error) *error = true;
    return c ? c->errstr : "no context";
  }
  redisSetTimeout(c.get(), tv);
  std::vector<const char*> a;
  std::vector<std::size_t> l;
  for (const auto& s : argv) {
    a.push_back(s.data());
    l.push_back(s.size());
  }
  auto* r = static_cast<redisReply*>(redisCommandArgv(c.get(), int(a.size()), a.data(), l.data()));
  if (!r) {
    if (error) *error = true;
    return c->errstr;
  }
  std::function<std::string(const redisReply*)> text = [&](const redisReply* x) -> std::string {
    switch (x->type) {
      case REDIS_REPLY_INTEGER:
        return std::to_string(x->integer);
      case REDIS_REPLY_NIL:
        return "(nil)";
      case REDIS_REPLY_ARRAY: {
        std::string out;
        for (std::size_t i = 0; i < x->elements; ++i) out += (i ? "\n" : "") + text(x->element[i]);
        return out;
      }
      default:
        return std::string(x->str, x->len);
    }
  };
  if (error) *error = r->type == REDIS_REPLY_ERROR;
  std::string out = text(r);
  freeReplyObject(r);
  return out;
}

class RedisServer {
 public:
  /// Starts redis-server in `dir` (created) on a free port with `extra`
  /// arguments (e.g. {"--maxmemory", "2mb"}); waits until it answers PING.
  RedisServer(fs::path dir, std::vector<std::string> extra = {})
      : dir_(std::move(dir)), extra_(std::move(extra)) {
    fs::create_directories(dir_);
    for (int attempt = 0; attempt < 5 && !start(free_port()); ++attempt) {
    }
    if (!process_.running()) throw std::runtime_error("redis-server did not start in " + dir_.string());
  }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string spec() const { return "redis://" + address(); }
  const fs::path& dir() const { return dir_; }

  std::string command(const std::vector<std::string>& argv, bool* error = nullptr) const {
    return redis_command("127.0.0.1", port_, argv, error);
  }

  /// SIGKILL: no shutdown, no save.
  void kill() { process_.kill(SIGKILL); }
  /// Starts it again on the same port and folder (loads dump.rdb if there).
  void restart() {
    for (int attempt = 0; attempt < 50 && !start(port_); ++attempt)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!process_.running()) throw std::runtime_error("redis-server did not restart on " + address());
  }

 private:
  bool start(int port) {
    port_ = port;
    std::vector<std::string> argv{*find_program("redis-server"),
                                  "--port",
                                  std::to_string(port),
                                  "--bind",
                                  "127.0.0.1",
                                  "--dir",
                                  dir_.string(),
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--daemonize",
                                  "no",
                                  "--logfile",
                                  (dir_ / "redis.log").string()};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    process_ = ChildProcess(argv);
    for (int i = 0; i < 200; ++i) {
      if (process_.wait_for(0.0)) return false;  // exited: port taken or bad args
      bool error = false;
      if (command({"PING"}, &error) == "PONG" && !error) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    process_.kill();
    return false;
  }

  fs::path dir_;
  std::vector<std::string> extra_;
  int port_ = 0;
  ChildProcess process_;
};

/// Three masters, slots split evenly, node timeout 1 s; with `replicas`, one
/// replica per master (nodes 3-5 replicate 0-2), so a master's death is
/// followed by its replica's promotion.
class RedisCluster {
 public:
  explicit RedisCluster(const fs::path& dir, bool replicas = false) {
    const int n = replicas ? 6 : 3;
    for (int i = 0; i < n; ++i)
      nodes.push_back(std::make_unique<RedisServer>(
          dir / ("node" + std::to_string(i)),
          std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                   "--cluster-node-timeout", "1000", "--cluster-require-full-coverage",
                                   "yes"}));
    const int ranges[3][2] = {{0, 5460}, {5461, 10922}, {10923, 16383}};
    for (int i = 0; i < 3; ++i)
      check(nodes[i]->command(
          {"CLUSTER", "ADDSLOTSRANGE", std::to_string(ranges[i][0]), std::to_string(ranges[i][1])}));
    for (int i = 1; i < n; ++i)
      check(nodes[i]->command({"CLUSTER", "MEET", "127.0.0.1", std::to_string(nodes[0]->port())}));
    wait_until([&] {
      for (auto& node : nodes)
        if (node->command({"CLUSTER", "INFO"}).find("cluster_known_nodes:" + std::to_string(n)) ==
            std::string::npos)
          return false;
      return true;
    });
    for (int i = 3; i < n; ++i) check(nodes[i]->command({"CLUSTER", "REPLICATE", id(i - 3)}));
    // Every node must know every slot (and every master its replica) before
    // the cluster serves.
    wait_until([&] {
      for (int i = 0; i < n; ++i) {
        const std::string info = nodes[i]->command({"CLUSTER", "INFO"});
        if (info.find("cluster_state:ok") == std::string::npos ||
            info.find("cluster_slots_assigned:16384") == std::string::npos)
          return false;
        if (i < 3 && replicas &&
            nodes[i]->command({"INFO", "replication"}).find("connected_slaves:1") == std::string::npos)
          return false;
      }
      return true;
    });
  }

  std::string spec() const { return "redis://" + nodes[0]->address(); }
  std::string id(int i) const { return nodes[i]->command({"CLUSTER", "MYID"}); }
  /// Index of the node at "127.0.0.1:PORT".
  int index_of(const std::string& address) const {
    for (int i = 0; i < static_cast<int>(nodes.size()); ++i)
      if (nodes[i]->address() == address) return i;
    return -1;
  }

  std::vector<std::unique_ptr<RedisServer>> nodes;

 private:
  static void check(const std::string& reply) {
    if (reply != "OK") throw std::runtime_error("cluster setup: " + reply);
  }
  static void wait_until(const std::function<bool()>& ready) {
    for (int i = 0; i < 600; ++i) {
      if (ready()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    throw std::runtime_error("the test cluster did not come up (cluster_state:ok)");
  }
};

/// A fresh folder under the system temp folder, removed afterwards.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& name) {
    path = fs::temp_directory_path() / ("kvscope_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace kvscope::stream::testing
