#pragma once

#include "session.h"

namespace kvscope::stream::detail {

/// Runs the session over a real TCP connection on 127.0.0.1: the calling
/// thread is the paced sender, one thread receives frames, one decodes them.
/// Returns when all threads have ended; failures are recorded in the session.
void run_real(Session& session);

}  // namespace kvscope::stream::detail
