// SPDX-License-Identifier: Apache-2.0
// DeviceHalfBuffer, the last call's timings and fp16_to_cache
// (kvscope/kernels/device_buffer.h).

#include <cuda_runtime.h>

#include <mutex>
#include <utility>

#include "cuda_util.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kernels/device_buffer.h"

namespace kvscope::kernels {
namespace {
std::mutex g_timings_mutex;
GpuTimings g_timings;
}  // namespace

void record_gpu_timings(double kernel_ms, double total_ms) {
  std::lock_guard lock(g_timings_mutex);
  g_timings = {kernel_ms, total_ms};
}

GpuTimings last_gpu_timings() {
  std::lock_guard lock(g_timings_mutex);
  return g_timings;
}

DeviceHalfBuffer::DeviceHalfBuffer(std::size_t elements) : size_(elements) {
  cuda::require_device("DeviceHalfBuffer");
  if (elements) cuda::check(cudaMalloc(reinterpret_cast<void**>(&data_), elements * 2), "cudaMalloc");
}
DeviceHalfBuffer::~DeviceHalfBuffer() {
  if (data_) cudaFree(data_);
}
DeviceHalfBuffer::DeviceHalfBuffer(DeviceHalfBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
DeviceHalfBuffer& DeviceHalfBuffer::operator=(DeviceHalfBuffer&& o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  return *this;
}
std::vector<std::uint16_t> DeviceHalfBuffer::download() const {
  std::vector<std::uint16_t> out(size_);
  if (size_) cuda::check(cudaMemcpy(out.data(), data_, size_ * 2, cudaMemcpyDeviceToHost), "download");
  return out;
}

kv::KVCache fp16_to_cache(const kv::CacheShape& shape, std::span<const std::uint16_t> halves) {
  kv::KVCache cache(shape);
  if (halves.size() != cache.data().size()) {
    throw Error(ErrorCode::InvalidArgument, "fp16_to_cache: size does not match the shape");
  }
  auto out = cache.data();
  for (std::size_t i = 0; i < halves.size(); ++i) out[i] = half_to_float(halves[i]);
  return cache;
}

}  // namespace kvscope::kernels
