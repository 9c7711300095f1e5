#pragma once

#include <cstddef>
#include <functional>

namespace kvscope {

/// Number of worker threads to use when the caller asks for `requested`
/// (0 = one per hardware thread). Always >= 1.
int resolve_threads(int requested);

/// Runs body(i) for every i in [0, count) on up to `threads` threads
/// (0 = all hardware threads), work-stealing by atomic counter so uneven
/// items balance. Blocks until all finish. If any body throws, the remaining
/// items are skipped and the first exception is rethrown here.
void parallel_for(std::size_t count, int threads, const std::function<void(std::size_t)>& body);

}  // namespace kvscope
