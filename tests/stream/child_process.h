// SPDX-License-Identifier: Apache-2.0
#pragma once

// Processes the streaming tests start: redis-server instances and
// kvscope-cli sender/receiver processes. Each child dies with the test
// (PR_SET_PDEATHSIG) and is killed in the destructor, so nothing is left
// running whatever happens to the test.

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kvscope::stream::testing {

/// The first executable called `name` on PATH, or nullopt.
inline std::optional<std::string> find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (std::size_t b = 0; b <= p.size();) {
    const auto e = std::min(p.find(':', b), p.size());
    const auto candidate = std::filesystem::path(p.substr(b, e - b)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    b = e + 1;
  }
  return std::nullopt;
}

/// A loopback TCP port that was free a moment ago.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// Runs `fork_and_exec` on one thread that lives as long as the test
/// process: a child's PR_SET_PDEATHSIG fires when the thread that forked it
/// ends, so children forked from short-lived threads (a test's fault
/// injector) must not be forked there.
inline pid_t fork_on_stable_thread(const std::function<pid_t()>& fork_and_exec) {
  struct Spawner {
    std::mutex mutex;
    std::condition_variable cv;
    const std::function<pid_t()>* job = nullptr;
    pid_t result = -1;
    bool done = false;
    Spawner() {
      std::thread([this] {
        std::unique_lock lock(mutex);
        for (;;) {
          cv.wait(lock, [&] { return job != nullptr; });
          result = (*job)();
          job = nullptr;
          done = true;
          cv.notify_all();
        }
      }).detach();
    }
  };
  static Spawner* spawner = new Spawner;  // never destroyed: its thread runs until exit
  static std::mutex one_at_a_time;
  std::lock_guard serial(one_at_a_time);
  std::unique_lock lock(spawner->mutex);
  spawner->done = false;
  spawner->job = &fork_and_exec;
  spawner->cv.notify_all();
  spawner->cv.wait(lock, [&] { return spawner->done; });
  return spawner->result;
}

class ChildProcess {
 public:
  ChildProcess() = default;
  /// Starts argv[0] (a path) with argv; its stdout is readable with
  /// read_line(), stderr goes to `stderr_path` (or is inherited when empty).
  ChildProcess(const std::vector<std::string>& argv, const std::string& stderr_path = {}) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    const pid_t parent = ::getpid();
    // Built before fork(): the child of a threaded process must not allocate.
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = fork_on_stable_thread([&]() -> pid_t {
      const pid_t pid = ::fork();
      if (pid != 0) return pid;
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out[1], STDOUT_FILENO);
      if (!stderr_path.empty()) {
        const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (err >= 0) ::dup2(err, STDERR_FILENO);
      }
      ::execv(args[0], args.data());
      ::_exit(127);
    });
    if (pid_ <= 0) throw std::runtime_error("fork failed");
    ::close(out[1]);
    out_ = out[0];
  }
  ChildProcess(ChildProcess&& o) noexcept { *this = std::move(o); }
  ChildProcess& operator=(ChildProcess&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(out_, o.out_);
    std::swap(buffer_, o.buffer_);
    return *this;
  }
  ~ChildProcess() {
    kill(SIGKILL);
    if (out_ >= 0) ::close(out_);
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  /// Sends `sig` and reaps the child (SIGKILL: at once; others: up to 10 s,
  /// then SIGKILL). Returns its wait status, or -1 when not running.
  int kill(int sig = SIGKILL) {
    signal_child(sig);
    if (auto status = wait_for(10.0)) return *status;
    signal_child(SIGKILL);
    return wait_for(10.0).value_or(-1);
  }

  /// Waits up to `seconds` for the child to exit; its wait status, or nullopt.
  std::optional<int> wait_for(double seconds) {
    if (pid_ <= 0) return std::nullopt;
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      if (std::chrono::steady_clock::now() > end) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  /// The next line of stdout within `seconds`, or nullopt (EOF or timeout).
  std::optional<std::string> read_line(double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      const auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  /// Everything left on stdout until EOF (or `seconds`).
  std::string read_all(double seconds) {
    std::string all;
    while (auto line = read_line(seconds)) all += *line + "\n";
    all += buffer_;
    buffer_.clear();
    return all;
  }

 private:
  // Only ever this child: never 0 (our process group) or -1 (every process).
  void signal_child(int sig) {
    if (pid_ > 1) ::kill(pid_, sig);
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
};

}  // namespace kvscope::stream::testing
