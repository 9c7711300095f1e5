// SPDX-License-Identifier: Apache-2.0
#pragma once

// Which compute backend KVScope uses for the codec's hot paths. Plain C++:
// front ends (CLI doctor, GUI status bar) include this without nvcc.

#include <string>

namespace kvscope::kernels {

/// True when the CUDA runtime sees at least one usable device (driver
/// present, device of compute capability >= 7.0). Never throws; the answer
/// is computed once and cached. Setting KVSCOPE_FORCE_CPU=1 in the
/// environment makes it false, to compare paths or work around a bad driver.
bool cuda_device_available();

/// Name of device 0 ("NVIDIA H100 80GB HBM3"), or "" without a device.
std::string device_name();

/// The backend the GPU-aware calls pick: "cuda:<device name>" when a device
/// is available, "cpu" otherwise. Shown by `kvscope-cli doctor` and the GUI.
std::string compute_backend();

/// Why no device is used ("no CUDA driver", "KVSCOPE_FORCE_CPU set", ...),
/// or "" when one is.
std::string cpu_fallback_reason();

}  // namespace kvscope::kernels
