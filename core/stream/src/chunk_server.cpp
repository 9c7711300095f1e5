// SPDX-License-Identifier: Apache-2.0
// The chunk server and its client over plain POSIX sockets: one blocking
// thread per connection is all a sender needs, and poll() gives the client
// the timeouts that keep a receiver from ever hanging.
#include "kvscope/stream/chunk_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "wire.h"

namespace kvscope::stream {
namespace {

using Clock = std::chrono::steady_clock;

struct NetFailure {
  std::string what;
};

std::string errno_text() {
  return std::strerror(errno);
}

/// Reads exactly `size` bytes; false on EOF or error (server side: the
/// receiver went away, nothing to report).
bool read_all(int fd, std::uint8_t* data, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::recv(fd, data + got, size - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      return false;
    }
  }
  return true;
}

bool write_all(int fd, const std::uint8_t* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::send(fd, data + done, size - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
      return false;
    }
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------
// Server

struct ChunkServer::Impl {
  std::shared_ptr<ChunkStore> store;
  std::mutex store_mutex;
  std::mutex log_mutex;
  ServerOptions options;
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> requests{0};
  std::thread acceptor;
  std::mutex conn_mutex;
  std::condition_variable conn_cv;
  std::vector<int> conn_fds;
  int active = 0;

  void accept_loop() {
    while (!stopping.load()) {
      pollfd p{listen_fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int fd = ::accept(listen_fd, nullptr, nullptr);
      if (fd < 0) continue;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(conn_mutex);
      if (stopping.load()) {
        ::close(fd);
        break;
      }
      conn_fds.push_back(fd);
      ++active;
      std::thread([this, fd] { serve(fd); }).detach();
    }
  }

  /// Writes with the configured fault applied at connection offset `offset`.
  bool send_bytes(int fd, const std::uint8_t* data, std::size_t n, std::int64_t& offset) {
    const auto& fault = options.fault;
    std::vector<std::uint8_t> copy;
    if (fault.corrupt_at >= offset && fault.corrupt_at < offset + std::int64_t(n)) {
      copy.assign(data, data + n);
      copy[static_cast<std::size_t>(fault.corrupt_at - offset)] ^= 0xFF;
      data = copy.data();
    }
    bool cut = false;
    if (fault.cut_after >= 0 && fault.cut_after < offset + std::int64_t(n)) {
      n = static_cast<std::size_t>(std::max<std::int64_t>(0, fault.cut_after - offset));
      cut = true;
    }
    if (n > 0 && !write_all(fd, data, n)) return false;
    offset += std::int64_t(n);
    return !cut;
  }

  bool reply(int fd, wire::FrameType type, std::span<const std::uint8_t> payload, std::int64_t& offset) {
    wire::Header h;
    h.type = type;
    h.payload_bytes = payload.size();
    h.payload_crc = crc32c(payload);
    const auto header = wire::encode_header(h);
    if (!send_bytes(fd, header.data(), header.size(), offset)) return false;
    // Pieces of 256 KiB so a cut or corruption lands where it was asked to.
    for (std::size_t pos = 0; pos < payload.size(); pos += 256 * 1024) {
      const std::size_t n = std::min<std::size_t>(256 * 1024, payload.size() - pos);
      if (!send_bytes(fd, payload.data() + pos, n, offset)) return false;
    }
    return true;
  }

  void serve(int fd) {
    std::int64_t offset = 0;
    for (;;) {
      std::array<std::uint8_t, wire::kHeaderBytes> hb{};
      if (!read_all(fd, hb.data(), hb.size())) break;
      wire::Header h;
      std::vector<std::uint8_t> request;
      try {
        h = wire::decode_header(hb);
        require(h.type == wire::FrameType::Get || h.type == wire::FrameType::List, ErrorCode::Format,
                "expected a request frame");
        request.resize(h.payload_bytes);
        if (!read_all(fd, request.data(), request.size())) break;
        require(crc32c(request) == h.payload_crc, ErrorCode::Checksum, "request CRC mismatch");
      } catch (const Error& e) {
        const std::string msg = std::string("bad request: ") + e.what();
        reply(fd, wire::FrameType::Failed,
              std::span(reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()), offset);
        break;  // the stream is out of step: close it
      }
      ++requests;
      const std::string key(request.begin(), request.end());
      if (options.on_request) {
        std::lock_guard lock(log_mutex);
        options.on_request(h.type == wire::FrameType::Get ? "GET" : "LIST", key);
      }
      bool ok = true;
      try {
        if (h.type == wire::FrameType::Get) {
          std::optional<std::vector<std::uint8_t>> value;
          {
            std::lock_guard lock(store_mutex);
            value = store->get(key);
          }
          ok = value ? reply(fd, wire::FrameType::Value, *value, offset)
                     : reply(fd, wire::FrameType::Missing, {}, offset);
        } else {
          std::vector<std::string> keys;
          {
            std::lock_guard lock(store_mutex);
            keys = store->list(key);
          }
          std::string text;
          for (const auto& k : keys) text += k + "\n";
          ok = reply(fd, wire::FrameType::Keys,
                     std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), offset);
        }
      } catch (const std::exception& e) {
        const std::string msg = e.what();
        ok = reply(fd, wire::FrameType::Failed,
                   std::span(reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()), offset);
      }
      if (!ok) break;
    }
    std::lock_guard lock(conn_mutex);
    std::erase(conn_fds, fd);
    ::close(fd);
    --active;
    conn_cv.notify_all();
  }
};

ChunkServer::ChunkServer(std::shared_ptr<ChunkStore> store, const ServerOptions& options)
    : impl_(std::make_unique<Impl>()) {
  require(store != nullptr, ErrorCode::InvalidArgument, "chunk server needs a store");
  impl_->store = std::move(store);
  impl_->options = options;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(options.port));
  if (::inet_pton(AF_INET, options.bind.c_str(), &addr.sin_addr) != 1)
    throw Error(ErrorCode::InvalidArgument, "serve: '" + options.bind + "' is not an IPv4 address");
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(ErrorCode::Network, "serve: cannot create a socket: " + errno_text());
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    throw Error(ErrorCode::Network,
                "serve: cannot listen on " + options.bind + ":" + std::to_string(options.port) + ": " + why);
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  impl_->listen_fd = fd;
  impl_->port = ntohs(addr.sin_port);
  impl_->acceptor = std::thread([this] { impl_->accept_loop(); });
}

ChunkServer::~ChunkServer() {
  stop();
}

int ChunkServer::port() const {
  return impl_->port;
}

std::string ChunkServer::address() const {
  return impl_->options.bind + ":" + std::to_string(impl_->port);
}

std::uint64_t ChunkServer::requests() const {
  return impl_->requests.load();
}

void ChunkServer::stop() {
  if (impl_->stopping.exchange(true)) return;
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  ::close(impl_->listen_fd);
  std::unique_lock lock(impl_->conn_mutex);
  for (int fd : impl_->conn_fds) ::shutdown(fd, SHUT_RDWR);
  impl_->conn_cv.wait(lock, [&] { return impl_->active == 0; });
}

// ---------------------------------------------------------------------------
// Client

namespace {

class ServerClient final : public ChunkStore {
 public:
  ServerClient(std::string host, int port, const StoreOptions& options)
      : host_(std::move(host)), port_(port), options_(options) {}
  ~ServerClient() override { disconnect(); }

  std::string describe() const override { return "tcp://" + host_ + ":" + std::to_string(port_); }

  void put(const std::string& key, std::span<const std::uint8_t>) override {
    throw Error(ErrorCode::Unsupported,
                describe() + ": a sender process is read-only (cannot put " + key + ")");
  }
  bool remove(const std::string& key) override {
    throw Error(ErrorCode::Unsupported,
                describe() + ": a sender process is read-only (cannot remove " + key + ")");
  }

  std::optional<std::vector<std::uint8_t>> get(const std::string& key, const ReadPacer& pace,
                                               FetchStats* stats) override {
    check_key(key);
    auto [type, payload] = request(wire::FrameType::Get, key, pace, stats);
    if (type == wire::FrameType::Missing) return std::nullopt;
    return std::move(payload);
  }

  std::vector<std::string> list(const std::string& prefix) override {
    auto [type, payload] = request(wire::FrameType::List, prefix, {}, nullptr);
    std::vector<std::string> keys;
    std::string cur;
    for (auto b : payload) {
      if (b == '\n') {
        keys.push_back(cur);
        cur.clear();
      } else {
        cur += static_cast<char>(b);
      }
    }
    return keys;
  }

 private:
  void disconnect() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void connect_now() {
    if (fd_ >= 0) return;
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res) != 0 || !res)
      throw NetFailure{"cannot resolve " + host_};
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? -1 : ::connect(fd, res->ai_addr, res->ai_addrlen);
    ::freeaddrinfo(res);
    if (fd < 0) throw NetFailure{"cannot create a socket: " + errno_text()};
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(options_.retry_timeout_s * 1000)) == 1 ? 0 : -1;
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 0 && (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) {
        errno = err;
        rc = -1;
      }
    }
    if (rc != 0) {
      const std::string why = errno_text();
      ::close(fd);
      throw NetFailure{"cannot connect: " + why};
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fd_ = fd;
  }

  /// Reads exactly `size` bytes (paced), failing after retry_timeout_s
  /// without any byte.
  void read_exact(std::uint8_t* data, std::size_t size, const ReadPacer& pace, std::size_t& wire) {
    std::size_t got = 0;
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(options_.retry_timeout_s));
    while (got < size) {
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, 50);
      if (r < 0 && errno != EINTR) throw NetFailure{"poll failed: " + errno_text()};
      if (r > 0) {
        const std::size_t want = std::min(size - got, options_.read_bytes);
        const ssize_t n = ::recv(fd_, data + got, want, 0);
        if (n == 0) throw NetFailure{"connection closed by the sender"};
        if (n < 0) {
          if (errno == EINTR || errno == EAGAIN) continue;
          throw NetFailure{"receive failed: " + errno_text()};
        }
        got += static_cast<std::size_t>(n);
        wire += static_cast<std::size_t>(n);
        if (pace) pace(static_cast<std::size_t>(n));
        deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options_.retry_timeout_s));
      } else if (Clock::now() > deadline) {
        throw NetFailure{"no data for " + std::to_string(options_.retry_timeout_s).substr(0, 4) + " s"};
      }
    }
  }

  std::pair<wire::FrameType, std::vector<std::uint8_t>> request(wire::FrameType type, const std::string& what,
                                                                const ReadPacer& pace, FetchStats* stats) {
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options_.retry_timeout_s));
    const char* verb = type == wire::FrameType::Get ? "GET" : "LIST";
    std::string last_error;
    int attempts = 0;
    for (;;) {
      ++attempts;
      std::size_t wire_bytes = 0;
      try {
        connect_now();
        wire::Header h;
        h.type = type;
        h.payload_bytes = what.size();
        h.payload_crc = crc32c(std::span(reinterpret_cast<const std::uint8_t*>(what.data()), what.size()));
        const auto header = wire::encode_header(h);
        std::vector<std::uint8_t> msg(header.begin(), header.end());
        msg.insert(msg.end(), what.begin(), what.end());
        // The socket is non-blocking: write with poll.
        for (std::size_t done = 0; done < msg.size();) {
          const ssize_t n = ::send(fd_, msg.data() + done, msg.size() - done, MSG_NOSIGNAL);
          if (n > 0) {
            done += static_cast<std::size_t>(n);
          } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, 50);
            if (Clock::now() > deadline) throw NetFailure{"send timed out"};
          } else {
            throw NetFailure{"send failed: " + errno_text()};
          }
        }
        std::array<std::uint8_t, wire::kHeaderBytes> hb{};
        read_exact(hb.data(), hb.size(), pace, wire_bytes);
        wire::Header rh;
        try {
          rh = wire::decode_header(hb);
        } catch (const Error& e) {
          disconnect();
          throw Error(e.code(), describe() + ": reply to " + verb + " " + what + ": " + e.what());
        }
        std::vector<std::uint8_t> payload(rh.payload_bytes);
        read_exact(payload.data(), payload.size(), pace, wire_bytes);
        if (stats) *stats = {wire_bytes, attempts, host_ + ":" + std::to_string(port_)};
        if (crc32c(payload) != rh.payload_crc) {
          disconnect();
          throw Error(ErrorCode::Checksum, describe() + ": reply to " + verb + " " + what +
                                               " was altered in transit (payload CRC mismatch)");
        }
        const bool expected = type == wire::FrameType::Get
                                  ? (rh.type == wire::FrameType::Value || rh.type == wire::FrameType::Missing)
                                  : rh.type == wire::FrameType::Keys;
        if (rh.type == wire::FrameType::Failed)
          throw Error(ErrorCode::Io, describe() + ": " + verb + " " + what + ": the sender failed: " +
                                         std::string(payload.begin(), payload.end()));
        if (!expected) {
          disconnect();
          throw Error(ErrorCode::Format, describe() + ": unexpected reply type to " + verb + " " + what);
        }
        return {rh.type, std::move(payload)};
      } catch (const NetFailure& f) {
        disconnect();
        last_error = f.what;
      } catch (...) {
        disconnect();  // a pacer's stop or a bad reply: the connection is out of step
        throw;
      }
      if (Clock::now() > deadline) {
        throw Error(ErrorCode::Network, describe() + ": " + verb + " " + what + " failed after " +
                                            std::to_string(attempts) + " attempts: " + last_error);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 * attempts, 250)));
    }
  }

  std::string host_;
  int port_;
  StoreOptions options_;
  int fd_ = -1;
};

}  // namespace

std::unique_ptr<ChunkStore> make_server_client(const std::string& host, int port,
                                               const StoreOptions& options) {
  require(!host.empty() && port > 0 && port < 65536, ErrorCode::InvalidArgument,
          "tcp store needs HOST:PORT (tcp://HOST:PORT)");
  return std::make_unique<ServerClient>(host, port, options);
}

}  // namespace kvscope::stream
