// Fuzz target for the stream library's parsers of outside bytes: bandwidth
// profile files (CSV and JSON) and the transport's frame header. The first
// byte picks the parser; the rest is the input. Any input must either parse
// into something usable or throw kvscope::Error: never crash, hang or UB.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>

#include "kvscope/common/error.h"
#include "kvscope/stream/profile.h"
#include "wire.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  const std::span<const std::uint8_t> body(data + 1, size - 1);
  try {
    if (mode == 2) {
      if (body.size() == kvscope::stream::wire::kHeaderBytes) {
        const auto h = kvscope::stream::wire::decode_header(body);
        if (h.payload_bytes > kvscope::stream::wire::kMaxPayload) std::abort();
      }
      return 0;
    }
    const auto path = std::filesystem::temp_directory_path() /
                      ("kvscope_fuzz_profile_" + std::to_string(::getpid()) + (mode == 0 ? ".csv" : ".json"));
    struct Remove {
      std::filesystem::path p;
      ~Remove() {
        std::error_code ec;
        std::filesystem::remove(p, ec);
      }
    } remove{path};
    {
      std::ofstream out(path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(body.data()), std::streamsize(body.size()));
    }
    const auto profile = kvscope::stream::load_profile(path);
    // A loaded profile must be usable: every transfer ends, rates are sane.
    for (double t0 : {0.0, 0.5, 100.0}) {
      const double end = profile.transfer_end(t0, 1e6, 3);
      if (!std::isfinite(end) || end < t0) std::abort();
      if (!(profile.mbps_at(t0, 1) >= 0)) std::abort();
    }
  } catch (const kvscope::Error&) {
  }
  return 0;
}
