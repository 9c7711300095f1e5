// SPDX-License-Identifier: Apache-2.0
// Fuzz target for the stream library's parsers of outside bytes: bandwidth
// trace files (CSV and JSON), the chunk server's frame header, and a chunk
// store's manifest (raw bytes, and JSON wrapped in a valid header and CRC so
// the field checks are reached). The first byte picks the parser; the rest
// is the input. Any input must either parse
// into something usable or throw kvscope::Error: never crash, hang or UB.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>

#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/profile.h"
#include "wire.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 5;
  const std::span<const std::uint8_t> body(data + 1, size - 1);
  try {
    if (mode == 3 || mode == 4) {
      std::vector<std::uint8_t> bytes;
      if (mode == 3) {
        bytes = {'K', 'V', 'S', 'M', 1, 0, 0, 0};
        const std::uint32_t crc = kvscope::crc32c(body);
        for (int b = 0; b < 4; ++b) bytes.push_back(static_cast<std::uint8_t>(crc >> (8 * b)));
      }
      bytes.insert(bytes.end(), body.begin(), body.end());
      const auto m = kvscope::stream::parse_manifest(bytes, "fuzz");
      // A parsed manifest is usable: one entry per chunk and level, keys form.
      if (m.chunks.empty() || m.levels.empty()) std::abort();
      for (std::size_t l = 0; l < m.levels.size(); ++l)
        if (m.levels[l].bytes.size() != m.chunks.size() || m.key(0, static_cast<int>(l)).empty())
          std::abort();
      return 0;
    }
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
