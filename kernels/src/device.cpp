// SPDX-License-Identifier: Apache-2.0
#include "kvscope/kernels/device.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda_util.h"

namespace kvscope::kernels {
namespace {

struct Probe {
  bool available = false;
  std::string name;
  std::string reason;
};

const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    const char* force = std::getenv("KVSCOPE_FORCE_CPU");
    if (force && *force && std::string(force) != "0") {
      p.reason = "KVSCOPE_FORCE_CPU set";
      return p;
    }
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      p.reason = std::string("no usable CUDA driver or device (") + cudaGetErrorString(status) + ")";
      cudaGetLastError();  // clear the sticky-free error so later calls start clean
      return p;
    }
    if (count == 0) {
      p.reason = "no CUDA device";
      return p;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
      p.reason = "cannot query CUDA device 0";
      return p;
    }
    if (prop.major < 7) {
      p.reason = std::string(prop.name) + " has compute capability " + std::to_string(prop.major) + "." +
                 std::to_string(prop.minor) + " (< 7.0)";
      return p;
    }
    p.available = true;
    p.name = prop.name;
    return p;
  }();
  return result;
}

}  // namespace

bool cuda_device_available() {
  return probe().available;
}
std::string device_name() {
  return probe().name;
}
std::string compute_backend() {
  return probe().available ? "cuda:" + probe().name : "cpu";
}
std::string cpu_fallback_reason() {
  return probe().reason;
}

namespace cuda {
void require_device(const char* what) {
  if (!cuda_device_available()) {
    throw Error(ErrorCode::Unsupported,
                std::string(what) + ": no CUDA device (" + cpu_fallback_reason() + ")");
  }
}
}  // namespace cuda

}  // namespace kvscope::kernels
