// Fuzz target for HDF5 import: arbitrary bytes as a .h5 file must give a
// kvscope::Error or a valid import (then a decode), never a crash. Built with
// libFuzzer when KVSCOPE_BUILD_FUZZERS; also linked into io_hdf5_tests, whose
// replay test feeds it deterministic mutations of a valid file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "kvscope/io/hdf5_container.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // One scratch file per process: HDF5 reads files by name.
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("kvscope-fuzz-hdf5-" + std::to_string(::getpid()) + ".h5");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const kvscope::io::Hdf5Contents contents = kvscope::io::import_hdf5(path);
    for (std::size_t i = 0; i < contents.levels.size(); ++i) {
      kvscope::codec::DecodeOptions options;
      options.threads = 1;
      (void)kvscope::io::decode_hdf5_level(contents, static_cast<int>(i), options);
    }
  } catch (const kvscope::Error&) {
    // Expected for malformed input.
  }
  std::error_code ec;
  std::filesystem::remove(path, ec);
  return 0;
}
