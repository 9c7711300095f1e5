// SPDX-License-Identifier: Apache-2.0
// Fuzz target for the stream library's parsers of outside bytes: bandwidth
// profile files (CSV and JSON), the transport's frame header and the store's
// context manifest (with and without a valid CRC prefix). The first
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
#include <vector>

#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/profile.h"
#include "wire.h"

namespace kvscope::test {

FuzzOutcome fuzz_stream_run(std::span<const std::uint8_t> data) {
  if (data.empty()) return {true, std::nullopt, {}};
  const int mode = data[0] % 5;
  const std::span<const std::uint8_t> body = data.subspan(1);
  return fuzz_outcome([&] {
    if (mode == 3 || mode == 4) {
      std::vector<std::uint8_t> bytes;
      if (mode == 3) {  // a valid prefix and CRC, so the parser reaches the body
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
      return;
    }
    if (mode == 2) {
      if (body.size() == kvscope::stream::wire::kHeaderBytes) {
        const auto h = kvscope::stream::wire::decode_header(body);
        if (h.payload_bytes > kvscope::stream::wire::kMaxPayload) std::abort();
      }
      return;
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
  });
}

}  // namespace kvscope::test

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto with_mode = [](int mode, const std::string& text) {
    std::vector<std::uint8_t> v{static_cast<std::uint8_t>(mode)};
    v.insert(v.end(), text.begin(), text.end());
    return v;
  };
  kvscope::test::write_fuzz_seeds(
      {with_mode(0, "# trace\ntime_s,mbps\n0,10.5\n0.5,3\n1.25,0\n2,40\n"),
       with_mode(1, R"({"kind": "steps", "points": [[0, 100], [1, 15], [3, 40]]})"),
       with_mode(1, R"({"kind": "per_chunk_random", "min_mbps": 100, "max_mbps": 10000, "seed": 1})"),
       with_mode(2, std::string(kvscope::stream::wire::kHeaderBytes, '\0'))});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvscope::test::fuzz_stream_run({data, size});
  return 0;
}
