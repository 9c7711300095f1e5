// SPDX-License-Identifier: Apache-2.0
#pragma once

// What a fuzz target did with one input, so replay tests can assert it:
// accepted (parsed/decoded), or refused with a named kvscope::Error. Any
// other exception escapes (libFuzzer reports it as a crash).

#include <optional>
#include <string>

#include "kvscope/common/error.h"

namespace kvscope::test {

struct FuzzOutcome {
  bool accepted = false;
  std::optional<ErrorCode> error;  ///< set when refused
  std::string message;             ///< the error's message when refused
};

/// Runs `body` (which parses/decodes the input) and reports its outcome.
template <typename Body>
FuzzOutcome fuzz_outcome(Body&& body) {
  try {
    body();
    return {true, std::nullopt, {}};
  } catch (const Error& e) {
    return {false, e.code(), e.what()};
  }
}

}  // namespace kvscope::test
