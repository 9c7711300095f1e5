// SPDX-License-Identifier: Apache-2.0
#pragma once

// Device memory holding a decoded cache, and the timings of the last GPU
// call. Plain C++ header (includable without nvcc).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels {

/// Owns a device allocation of fp16 values in the KVCache layout
/// [layer][kind][head][token][dim]. Constructing one with elements > 0
/// throws Error(Unsupported) without a device, Error(Internal) when the
/// allocation fails.
class DeviceHalfBuffer {
 public:
  DeviceHalfBuffer() = default;
  explicit DeviceHalfBuffer(std::size_t elements);
  ~DeviceHalfBuffer();
  DeviceHalfBuffer(DeviceHalfBuffer&& other) noexcept;
  DeviceHalfBuffer& operator=(DeviceHalfBuffer&& other) noexcept;
  DeviceHalfBuffer(const DeviceHalfBuffer&) = delete;
  DeviceHalfBuffer& operator=(const DeviceHalfBuffer&) = delete;

  std::uint16_t* data() { return data_; }
  const std::uint16_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  /// Copies to the host (fp16 bits).
  std::vector<std::uint16_t> download() const;

 private:
  std::uint16_t* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Timings of the last GPU decode or encode call, for benchmarks: kernel
/// time measured with CUDA events, and the wall time of the whole call.
struct GpuTimings {
  double kernel_ms = 0;
  double total_ms = 0;  ///< including host planning and host<->device copies
};
GpuTimings last_gpu_timings();
void record_gpu_timings(double kernel_ms, double total_ms);

/// fp16 bits in the KVCache layout -> a float cache of `shape`.
/// Error(InvalidArgument) when the sizes differ.
kv::KVCache fp16_to_cache(const kv::CacheShape& shape, std::span<const std::uint16_t> halves);

}  // namespace kvscope::kernels
