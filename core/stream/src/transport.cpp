#include "transport.h"

#include <algorithm>
#include <asio.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <optional>
#include <thread>

#include "kvscope/common/crc32c.h"
#include "wire.h"

namespace kvscope::stream::detail {
namespace {

using SteadyClock = std::chrono::steady_clock;
using asio::ip::tcp;
constexpr auto kPollSlice = std::chrono::milliseconds(20);

/// Profile-time clock: wall seconds since the start times the time scale.
class ProfileClock {
 public:
  ProfileClock(SteadyClock::time_point start, double scale) : start_(start), scale_(scale) {}
  double now() const { return std::chrono::duration<double>(SteadyClock::now() - start_).count() * scale_; }
  SteadyClock::time_point wall_at(double profile_t) const {
    return start_ + std::chrono::duration_cast<SteadyClock::duration>(
                        std::chrono::duration<double>(profile_t / scale_));
  }

 private:
  SteadyClock::time_point start_;
  double scale_;
};

/// Raised inside the transport loops to end them; the session already holds
/// the failure (or the cancel).
struct Stop {};

/// Runs one async operation on `io` until it completes, polling `stop` and an
/// idle deadline. Returns the operation's error code.
template <typename Start>
asio::error_code run_op(asio::io_context& io, tcp::socket& socket, Session& s, double idle_s,
                        const char* what, int chunk, std::size_t* transferred, Start start) {
  bool done = false;
  asio::error_code result;
  start([&](const asio::error_code& ec, std::size_t n) {
    done = true;
    result = ec;
    if (transferred) *transferred = n;
  });
  const auto deadline = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                                 std::chrono::duration<double>(idle_s));
  io.restart();
  while (!done) {
    io.run_for(kPollSlice);
    if (done) break;
    const bool timed_out = SteadyClock::now() > deadline;
    if (s.stopping() || timed_out) {
      asio::error_code ignored;
      socket.cancel(ignored);
      io.restart();
      io.run();  // let the cancelled handler run
      if (timed_out && !s.stopping())
        s.fail(StreamStatus::NetworkError, ErrorCode::Network,
               std::string("timed out after ") + std::to_string(idle_s) + " s with no progress while " +
                   what + " chunk " + std::to_string(chunk),
               chunk);
      throw Stop{};
    }
  }
  return result;
}

// ---------------------------------------------------------------------------
// Receiver: reads frames, hands them to the decode worker.

struct Frame {
  int chunk = 0;
  int level = 0;
  std::vector<std::uint8_t> payload;
  double arrival = 0;
};

class DecodeQueue {
 public:
  void push(Frame f) {
    {
      std::lock_guard lock(mutex_);
      frames_.push_back(std::move(f));
    }
    cv_.notify_one();
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    cv_.notify_one();
  }
  /// Next frame, or nullopt once closed and drained, or cancelled. After a
  /// network failure the frames that did arrive whole are still decoded.
  std::optional<Frame> pop(const Session& s) {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (s.cancelled()) return std::nullopt;
      if (!frames_.empty()) {
        Frame f = std::move(frames_.front());
        frames_.pop_front();
        return f;
      }
      if (closed_) return std::nullopt;
      cv_.wait_for(lock, kPollSlice);
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Frame> frames_;
  bool closed_ = false;
};

void read_exact(asio::io_context& io, tcp::socket& socket, Session& s, std::uint8_t* data, std::size_t size,
                const char* what, int chunk, std::size_t& received_total) {
  std::size_t got = 0;
  while (got < size) {
    std::size_t n = 0;
    const std::size_t want = std::min<std::size_t>(size - got, 1 << 20);
    const auto ec = run_op(io, socket, s, s.config.idle_timeout_s, what, chunk, &n, [&](auto handler) {
      socket.async_read_some(asio::buffer(data + got, want), handler);
    });
    got += n;
    received_total += n;
    if (ec) {
      const std::string why =
          ec == asio::error::eof ? "connection closed by the sender" : "receive failed: " + ec.message();
      s.fail(StreamStatus::NetworkError, ErrorCode::Network,
             why + " while reading " + what + " of chunk " + std::to_string(chunk) + " (" +
                 std::to_string(got) + " of " + std::to_string(size) + " bytes, " +
                 std::to_string(received_total) + " bytes in all)",
             chunk);
      throw Stop{};
    }
  }
}

void receive_loop(Session& s, asio::io_context& io, tcp::socket& socket, const ProfileClock& clock,
                  DecodeQueue& queue) {
  const int chunks = s.chunk_count();
  const int levels = static_cast<int>(s.config.policy.levels.size());
  std::size_t total = 0;
  try {
    for (int expected = 0;; ++expected) {
      std::array<std::uint8_t, wire::kHeaderBytes> hb{};
      const int shown = std::min(expected, chunks - 1);
      read_exact(io, socket, s, hb.data(), hb.size(), expected < chunks ? "the header" : "the end frame",
                 shown, total);
      wire::Header h;
      try {
        h = wire::decode_header(hb);
        if (h.type == wire::FrameType::End) {
          require(
              expected == chunks, ErrorCode::Format,
              "end frame after " + std::to_string(expected) + " of " + std::to_string(chunks) + " chunks");
          require(h.payload_bytes == 0, ErrorCode::Format, "end frame with a payload");
          break;
        }
        require(expected < chunks, ErrorCode::Format, "more chunks than the context has");
        require(h.chunk == static_cast<std::uint32_t>(expected), ErrorCode::Format,
                "frame for chunk " + std::to_string(h.chunk) + " where chunk " + std::to_string(expected) +
                    " was expected");
        if (h.type == wire::FrameType::Text)
          require(h.level == kTextLevel, ErrorCode::Format, "text frame with a codec level");
        else
          require(h.level >= 0 && h.level < levels, ErrorCode::Format,
                  "frame level " + std::to_string(h.level) + " out of range");
      } catch (const Error& e) {
        s.fail(StreamStatus::NetworkError, e.code(),
               "corrupted frame header at chunk " + std::to_string(shown) + ": " + e.what(), shown);
        throw Stop{};
      }
      Frame f;
      f.chunk = expected;
      f.level = h.level;
      f.payload.resize(h.payload_bytes);
      read_exact(io, socket, s, f.payload.data(), f.payload.size(), "the payload", expected, total);
      f.arrival = clock.now();
      if (h.type == wire::FrameType::Text && crc32c(f.payload) != h.payload_crc) {
        s.fail(StreamStatus::NetworkError, ErrorCode::Checksum,
               "chunk " + std::to_string(expected) + ": text payload CRC mismatch (bytes altered in transit)",
               expected);
        throw Stop{};
      }
      s.arrived(expected, f.arrival);
      queue.push(std::move(f));
    }
  } catch (const Stop&) {
  }
  queue.close();
  asio::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void decode_loop(Session& s, DecodeQueue& queue) {
  while (auto f = queue.pop(s)) {
    if (!s.receive(f->chunk, f->level, f->payload, f->arrival)) return;
    s.poll("decoded chunk " + std::to_string(f->chunk + 1));
  }
}

// ---------------------------------------------------------------------------
// Sender: paced writes with fault injection.

class Sender {
 public:
  Sender(Session& s, asio::io_context& io, tcp::socket& socket, const ProfileClock& clock)
      : s_(s), io_(io), socket_(socket), clock_(clock) {}

  /// Sends one frame paced by the profile from `t0`: a token bucket that
  /// starts empty and fills at the profile's rate, so byte k leaves when the
  /// profile has delivered k bytes since t0 (what the simulated clock
  /// computes), up to one slice of granularity.
  void send_frame(int chunk, double t0, std::span<const std::uint8_t> header,
                  std::span<const std::uint8_t> payload) {
    const std::size_t total = header.size() + payload.size();
    std::size_t offset = 0;
    while (offset < total) {
      // Slices of about 2 ms at the current wall rate, 4 KiB .. 4 MiB.
      const double wall_rate = s_.profile.mbps_at(clock_.now(), chunk) * 1e6 / 8.0 * s_.config.time_scale;
      const std::size_t slice =
          std::min(total - offset, std::clamp<std::size_t>(std::size_t(wall_rate * 0.002), 4096, 4 << 20));
      const double due = s_.profile.transfer_end(t0, double(offset + slice), chunk);
      wait_until(clock_.wall_at(due), chunk);
      std::size_t done = 0;
      while (done < slice) {
        const std::size_t pos = offset + done;
        std::size_t n = slice - done;
        const std::uint8_t* src;
        if (pos < header.size()) {
          n = std::min(n, header.size() - pos);
          src = header.data() + pos;
        } else {
          src = payload.data() + (pos - header.size());
        }
        write(src, n, chunk);
        done += n;
      }
      offset += slice;
    }
  }

  bool cut() const { return cut_; }

 private:
  void wait_until(SteadyClock::time_point wall, int chunk) {
    for (;;) {
      if (!s_.poll("sending chunk " + std::to_string(chunk + 1)) || s_.stopping()) throw Stop{};
      const auto now = SteadyClock::now();
      if (now >= wall) return;
      std::this_thread::sleep_for(std::min<SteadyClock::duration>(wall - now, kPollSlice));
    }
  }

  void write(const std::uint8_t* data, std::size_t n, int chunk) {
    const auto& fault = s_.config.fault;
    std::vector<std::uint8_t> copy;
    const auto start = static_cast<std::int64_t>(wire_offset_);
    if (fault.corrupt_at >= start && fault.corrupt_at < start + std::int64_t(n)) {
      copy.assign(data, data + n);
      copy[fault.corrupt_at - start] ^= 0xFF;
      data = copy.data();
    }
    bool cut_now = false;
    if (fault.cut_after >= 0 && fault.cut_after < start + std::int64_t(n)) {
      n = static_cast<std::size_t>(std::max<std::int64_t>(0, fault.cut_after - start));
      cut_now = true;
    }
    if (n > 0) {
      const auto ec =
          run_op(io_, socket_, s_, s_.config.idle_timeout_s, "sending", chunk, nullptr,
                 [&](auto handler) { asio::async_write(socket_, asio::buffer(data, n), handler); });
      if (ec) {
        // The receiver closes its end when it fails; that failure is the one to report.
        if (!s_.stopping())
          s_.fail(StreamStatus::NetworkError, ErrorCode::Network,
                  "send failed during chunk " + std::to_string(chunk) + ": " + ec.message(), chunk);
        throw Stop{};
      }
      wire_offset_ += n;
    }
    if (cut_now) {
      asio::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
      socket_.close(ignored);
      cut_ = true;
      throw Stop{};
    }
  }

  Session& s_;
  asio::io_context& io_;
  tcp::socket& socket_;
  const ProfileClock& clock_;
  std::size_t wire_offset_ = 0;
  bool cut_ = false;
};

}  // namespace

void run_real(Session& s) {
  asio::io_context send_io, recv_io;
  tcp::socket send_socket(send_io), recv_socket(recv_io);
  try {
    tcp::acceptor acceptor(recv_io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    // Loopback connect completes against the listen backlog, so connecting
    // before accepting cannot block.
    send_socket.connect(acceptor.local_endpoint());
    acceptor.accept(recv_socket);
    send_socket.set_option(tcp::no_delay(true));
  } catch (const std::system_error& e) {
    throw Error(ErrorCode::Network, std::string("cannot open a loopback TCP connection: ") + e.what());
  }
  const ProfileClock clock(SteadyClock::now(), s.config.time_scale);
  DecodeQueue queue;
  std::thread receiver([&] { receive_loop(s, recv_io, recv_socket, clock, queue); });
  std::thread decoder([&] { decode_loop(s, queue); });

  Sender sender(s, send_io, send_socket, clock);
  std::vector<std::uint8_t> text;
  // The token bucket may hold up to 20 ms (wall) of credit, so a sender that
  // woke late catches up instead of drifting behind the profile; a chunk's
  // send starts when the link became free for it (the previous chunk's
  // scheduled end, or now if that was longer ago than the bucket holds).
  const double credit = 0.020 * s.config.time_scale;
  double link_free = 0;
  auto start_time = [&] { return std::max(link_free, clock.now() - credit); };
  try {
    for (int i = 0; i < s.chunk_count(); ++i) {
      if (!s.poll("sending chunk " + std::to_string(i + 1)) || s.stopping()) throw Stop{};
      const double t0 = start_time();
      const int level = s.decide_chunk(i, t0);
      const auto payload = s.payload(i, level, text);
      wire::Header h;
      h.type = level == kTextLevel ? wire::FrameType::Text : wire::FrameType::Chunk;
      h.level = static_cast<std::int16_t>(level);
      h.chunk = static_cast<std::uint32_t>(i);
      h.payload_bytes = payload.size();
      h.payload_crc = level == kTextLevel ? crc32c(payload) : 0;
      const auto header = wire::encode_header(h);
      s.send_started(i, t0);
      sender.send_frame(i, t0, header, payload);
      s.send_finished(i, clock.now());
      link_free = s.profile.transfer_end(t0, double(header.size() + payload.size()), i);
    }
    wire::Header end;
    end.type = wire::FrameType::End;
    end.chunk = static_cast<std::uint32_t>(s.chunk_count());
    const auto header = wire::encode_header(end);
    sender.send_frame(s.chunk_count(), start_time(), header, {});
  } catch (const Stop&) {
  }
  receiver.join();
  decoder.join();
  asio::error_code ignored;
  send_socket.close(ignored);
}

}  // namespace kvscope::stream::detail
