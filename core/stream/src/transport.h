// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "session.h"

namespace kvscope::stream::detail {

/// Runs the session for real: the calling thread fetches chunks from the
/// source's store with its reads paced by the bandwidth trace (a token
/// bucket), one thread decodes them. Returns when both are done; failures
/// are recorded in the session.
void run_real(Session& session);

/// Runs the session on a simulated clock: fetches unpaced, arrival times
/// from the trace's integral, decodes in line.
void run_simulated(Session& session);

}  // namespace kvscope::stream::detail
