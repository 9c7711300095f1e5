// Runs the fuzz target over a few hundred deterministic mutations of valid
// streams of every codec, so CI exercises it without libFuzzer.
#include <gtest/gtest.h>

#include "test_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace kvscope::codec {
namespace {

TEST(FuzzReplay, MutationsOfEveryCodecNeverCrash) {
  const auto cache = synthetic_cache({2, 1, 19, 4}, 77);
  int runs = 0;
  for (const Codec* c : all_codecs()) {
    const auto valid = c->encode(cache, {{"chunk_tokens", "8"}}).bytes;
    EXPECT_EQ(LLVMFuzzerTestOneInput(valid.data(), valid.size()), 0);
    for (const auto& m : test::mutations(valid, 200, 1234)) {
      LLVMFuzzerTestOneInput(m.data(), m.size());
      ++runs;
    }
  }
  EXPECT_GE(runs, 1000);
}

}  // namespace
}  // namespace kvscope::codec
