// libFuzzer target for the bitstream decoder: any input must decode or throw
// kvscope::Error, never crash, hang or read out of bounds. Built with
// -fsanitize=fuzzer when KVSCOPE_BUILD_FUZZERS; fuzz_replay_test.cpp also
// runs it over deterministic mutations under ctest.
#include <cstddef>
#include <cstdint>
#include <span>

#include "kvscope/codec/bitstream.h"
#include "kvscope/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvscope;
  const std::span<const std::uint8_t> in(data, size);
  codec::DecodeOptions o;
  o.threads = 1;
  o.max_elements = std::size_t(1) << 22;
  o.profile_dir = "/nonexistent-kvscope-profiles";
  try {
    const auto cache = codec::decode(in, o);
    (void)cache;
  } catch (const Error&) {
  }
  try {
    const auto info = codec::inspect_stream(in, false);
    for (std::size_t i = 0; i < info.sections.size() && i < 4; ++i) {
      try {
        codec::decode_section(in, i, o);
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
