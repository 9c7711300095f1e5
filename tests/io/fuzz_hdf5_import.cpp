// SPDX-License-Identifier: Apache-2.0
// Fuzz target for HDF5 import: arbitrary bytes as a .h5 file must give a
// kvscope::Error or a valid import (then every level decodes or fails with
// an Error), never a crash, and nothing may allocate past the caps (reference
// data, datasets larger than their storage). In the hostile mode a file that
// starts with KVScope's user block gets its whole-file checksum recomputed
// first, as an attacker would, so the input reaches HDF5 and KVScope's
// readers instead of stopping at the checksum. Built with libFuzzer in the
// `fuzz` ctest label (tests/fuzz; hostile mode); hdf5_fuzz_replay_test.cpp
// replays both modes under ctest.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "fuzz_outcome.h"
#include "fuzz_seeds.h"
#include "hdf5_schema.h"
#include "kvscope/codec/codec.h"
#include "kvscope/codec/synthetic.h"
#include "kvscope/common/error.h"
#include "kvscope/io/hdf5_container.h"

namespace kvscope::test {

/// Caps of this target: 2^22 values for reference data and decoded levels.
inline constexpr std::size_t kFuzzHdf5MaxElements = std::size_t(1) << 22;

FuzzOutcome fuzz_hdf5_run(std::span<const std::uint8_t> data, bool hostile) {
  // One scratch file per process: HDF5 reads files by name.
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("kvscope-fuzz-hdf5-" + std::to_string(::getpid()) + ".h5");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  const char* magic = "KVSCOPE-HDF5\n";
  if (hostile && data.size() >= std::size_t(io::kHdf5UserBlockBytes) &&
      std::memcmp(data.data(), magic, std::strlen(magic)) == 0)
    io::schema::stamp_user_block(path, path.string(), io::kHdf5FormatVersion);
  auto outcome = fuzz_outcome([&] {
    io::Hdf5ImportOptions options;
    options.load_reference = true;
    options.max_elements = kFuzzHdf5MaxElements;
    options.isolate_timeout_seconds = 3;  // below libFuzzer's -timeout
    const io::Hdf5Contents contents = io::import_hdf5(path, options);
    for (std::size_t i = 0; i < contents.levels.size(); ++i) {
      codec::DecodeOptions d;
      d.threads = 1;
      d.max_elements = kFuzzHdf5MaxElements;
      (void)io::decode_hdf5_level(contents, static_cast<int>(i), d);
    }
  });
  std::error_code ec;
  std::filesystem::remove(path, ec);
  return outcome;
}

/// A small valid file: one cachegen level, the reference cache, context.
std::vector<std::uint8_t> fuzz_hdf5_seed() {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvscope-fuzz-seed-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  kv::KVCache cache = codec::synthetic_cache({1, 1, 8, 8}, 5);
  cache.info.model_name = "seed";
  auto contents = io::hdf5_contents_from_bitstream(
      codec::encode(cache, {"cachegen", {{"chunk_tokens", "4"}}}).bytes, "seed");
  contents.reference = cache;
  io::Hdf5ExportOptions options;
  options.include_reference = true;
  options.overwrite = true;
  io::export_hdf5(dir / "seed.h5", contents, options);
  std::ifstream in(dir / "seed.h5", std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(dir);
  return bytes;
}

}  // namespace kvscope::test

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kvscope::test::write_fuzz_seeds({kvscope::test::fuzz_hdf5_seed()});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvscope::test::fuzz_hdf5_run({data, size}, true);
  return 0;
}
