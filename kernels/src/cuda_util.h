// SPDX-License-Identifier: Apache-2.0
#pragma once

// Internal helpers for the CUDA sources: error checks that throw
// kvscope::Error, and RAII for device and pinned memory.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "kvscope/common/error.h"

namespace kvscope::kernels::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(ErrorCode::Internal,
                std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
  }
}

/// Throws Error(Unsupported) when no device can run the kernels.
void require_device(const char* what);

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) : n_(n) {
    if (n > 0) check(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)), "cudaMalloc");
  }
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  DeviceArray(DeviceArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return p_; }
  std::size_t size() const { return n_; }
  void upload(const T* src, std::size_t n, cudaStream_t s = nullptr) {
    if (n) check(cudaMemcpyAsync(p_, src, n * sizeof(T), cudaMemcpyHostToDevice, s), "upload");
  }
  void download(T* dst, std::size_t n, cudaStream_t s = nullptr) const {
    if (n) check(cudaMemcpyAsync(dst, p_, n * sizeof(T), cudaMemcpyDeviceToHost, s), "download");
  }
  void zero(cudaStream_t s = nullptr) {
    if (n_) check(cudaMemsetAsync(p_, 0, n_ * sizeof(T), s), "memset");
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

template <class T>
class PinnedArray {
 public:
  PinnedArray() = default;
  explicit PinnedArray(std::size_t n) : n_(n) {
    if (n > 0) check(cudaMallocHost(reinterpret_cast<void**>(&p_), n * sizeof(T)), "cudaMallocHost");
  }
  ~PinnedArray() {
    if (p_) cudaFreeHost(p_);
  }
  PinnedArray(PinnedArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  PinnedArray& operator=(PinnedArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

/// Times a region on a stream with CUDA events.
class EventTimer {
 public:
  EventTimer() {
    check(cudaEventCreate(&a_), "cudaEventCreate");
    check(cudaEventCreate(&b_), "cudaEventCreate");
  }
  ~EventTimer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(cudaStream_t s = nullptr) { check(cudaEventRecord(a_, s), "cudaEventRecord"); }
  void stop(cudaStream_t s = nullptr) { check(cudaEventRecord(b_, s), "cudaEventRecord"); }
  double ms() {
    check(cudaEventSynchronize(b_), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, a_, b_), "cudaEventElapsedTime");
    return t;
  }

 private:
  cudaEvent_t a_{}, b_{};
};

}  // namespace kvscope::kernels::cuda
