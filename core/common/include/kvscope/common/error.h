// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace kvscope {

/// What went wrong, so callers (GUI dialogs, CLI exit codes, tests) can react
/// without parsing messages.
enum class ErrorCode {
  InvalidArgument,  ///< a parameter or shape the caller passed is out of range
  Io,               ///< a file could not be opened, read, written or renamed
  Format,           ///< input bytes are malformed: bad magic, truncated, inconsistent
  Checksum,         ///< a CRC or hash did not match: the input was altered
  Unsupported,      ///< well-formed input using a feature or version we lack
  Cancelled,        ///< a progress callback asked to stop
  Network,          ///< a transport connection failed or was cut
  Internal,         ///< a broken invariant inside KVScope (a bug)
};

std::string_view to_string(ErrorCode code);

/// The one exception type KVScope's core throws. `what()` is a complete,
/// user-facing message; when a file is involved it names the file.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  /// Message becomes "<file>: <message>".
  Error(ErrorCode code, const std::string& file, const std::string& message);

  ErrorCode code() const noexcept { return code_; }
  /// The file the error is about, or empty.
  const std::string& file() const noexcept { return file_; }

 private:
  ErrorCode code_;
  std::string file_;
};

/// Throws Error(code, message) when `condition` is false. For validating
/// untrusted input before using it.
inline void require(bool condition, ErrorCode code, const std::string& message) {
  if (!condition) throw Error(code, message);
}

}  // namespace kvscope
