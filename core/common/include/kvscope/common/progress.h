// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <string_view>

#include "kvscope/common/error.h"

namespace kvscope {

/// Progress report for long operations. `fraction` is in [0, 1]; `stage` is a
/// short human-readable label ("loading tensors", "layer 3/30").
/// Return false to cancel: the operation then throws Error(ErrorCode::Cancelled)
/// at its next check and leaves no partial output behind.
/// May be called from worker threads; implementations must be thread-safe.
using ProgressFn = std::function<bool(double fraction, std::string_view stage)>;

/// Calls `progress` if set; throws Error(Cancelled) when it returns false.
inline void report_progress(const ProgressFn& progress, double fraction, std::string_view stage) {
  if (progress && !progress(fraction, stage)) {
    throw Error(ErrorCode::Cancelled, std::string("cancelled during ") + std::string(stage));
  }
}

}  // namespace kvscope
