// SPDX-License-Identifier: Apache-2.0
#include "kvscope/common/error.h"

namespace kvscope {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::Io: return "I/O error";
    case ErrorCode::Format: return "format error";
    case ErrorCode::Checksum: return "checksum mismatch";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::Cancelled: return "cancelled";
    case ErrorCode::Network: return "network error";
    case ErrorCode::Internal: return "internal error";
  }
  return "error";
}

Error::Error(ErrorCode code, const std::string& message)
    : std::runtime_error(message), code_(code) {}

Error::Error(ErrorCode code, const std::string& file, const std::string& message)
    : std::runtime_error(file.empty() ? message : file + ": " + message), code_(code), file_(file) {}

}  // namespace kvscope
