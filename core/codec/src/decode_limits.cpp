// SPDX-License-Identifier: Apache-2.0
// The decoders' default size cap, derived from the memory this process may
// use (docs/hostile-input.md): untrusted input must not make KVScope
// allocate more than the machine has, whatever the input declares.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <string>

#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"

namespace kvscope::codec {

namespace {

// A cgroup memory limit file: a byte count, or "max" (none); 0 if unreadable.
std::uint64_t cgroup_limit(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return 0;
  }
}

std::uint64_t read_memory_budget() {
  std::uint64_t budget = 0;
  auto take = [&](std::uint64_t v) {
    if (v > 0) budget = budget == 0 ? v : std::min(budget, v);
  };
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) take(std::uint64_t(pages) * std::uint64_t(page));
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) take(std::uint64_t(as.rlim_cur));
  take(cgroup_limit("/sys/fs/cgroup/memory.max"));                    // cgroup v2
  take(cgroup_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes"));  // cgroup v1 ("no limit" is ~2^63)
  return budget;
}

}  // namespace

std::uint64_t memory_budget_bytes() {
  static const std::uint64_t budget = read_memory_budget();
  return budget;
}

namespace {
std::atomic<std::size_t> g_default_cap{0};
}  // namespace

void set_default_max_elements(std::size_t values) {
  g_default_cap.store(values, std::memory_order_relaxed);
}

std::size_t default_max_elements() {
  if (const std::size_t set = g_default_cap.load(std::memory_order_relaxed)) return set;
  const std::uint64_t budget = memory_budget_bytes();
  if (budget == 0) return std::size_t(1) << 31;
  return std::size_t(std::max<std::uint64_t>(budget / 4 / sizeof(float), std::uint64_t(1) << 20));
}

void require_within_limit(std::uint64_t elements, std::size_t limit, const std::string& what) {
  if (elements <= limit) return;
  throw Error(ErrorCode::Unsupported,
              what + ": declares " + std::to_string(elements) + " values, more than the limit of " +
                  std::to_string(limit) + " (" + std::to_string(limit * sizeof(float) >> 20) +
                  " MiB as float32; raise it with DecodeOptions::max_elements or --max-elements)");
}

}  // namespace kvscope::codec
