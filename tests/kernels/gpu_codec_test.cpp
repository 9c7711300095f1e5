// GPU vs CPU: the kernels must produce exactly what the CPU reference
// produces. The checks live in kernels/tools/gpu_checks.cpp so that
// `kvscope-gpu-bench --check` can run them where GoogleTest is missing; here
// each is one test. All skip, with the reason, without a CUDA device.

#include "kvscope/kernels/gpu_codec.h"

#include <gtest/gtest.h>

#include "gpu_checks.h"
#include "kvscope/common/error.h"
#include "kvscope/kernels/device.h"
#include "kvscope/kernels/quantize.h"
#include "synthetic_cache.h"

namespace kvscope::kernels {
namespace {

TEST(Device, BackendNameMatchesAvailability) {
  if (cuda_device_available()) {
    EXPECT_EQ(compute_backend(), "cuda:" + device_name());
    EXPECT_TRUE(cpu_fallback_reason().empty());
  } else {
    EXPECT_EQ(compute_backend(), "cpu");
    EXPECT_FALSE(cpu_fallback_reason().empty());
  }
}

TEST(Device, GpuCallsWithoutDeviceAreUnsupportedErrors) {
  if (cuda_device_available()) GTEST_SKIP() << "a CUDA device is present";
  const auto cache = testing::make_cache({1, 1, 8, 4}, testing::Pattern::Realistic, 1, 1);
  for (auto call : {+[](const kv::KVCache& c) { gpu_encode(c, {}); },
                    +[](const kv::KVCache& c) { gpu_quantize(c, 8); }}) {
    try {
      call(cache);
      ADD_FAILURE() << "a GPU call ran without a device";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
    }
  }
  EXPECT_THROW(gpu_decode(cpu_encode(cache, {})), Error);
}

class GpuCheck : public ::testing::TestWithParam<std::size_t> {};

TEST_P(GpuCheck, MatchesCpu) {
  const auto& check = checks::all_checks()[GetParam()];
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device: " << cpu_fallback_reason();
  SCOPED_TRACE(check.what);
  std::string failure;
  try {
    failure = check.run();
  } catch (const Error& e) {
    failure = std::string("threw: ") + e.what();
  }
  EXPECT_EQ(failure, "");
}

INSTANTIATE_TEST_SUITE_P(Kernels, GpuCheck, ::testing::Range<std::size_t>(0, checks::all_checks().size()),
                         [](const ::testing::TestParamInfo<std::size_t>& info) {
                           return checks::all_checks()[info.param].name;
                         });

}  // namespace
}  // namespace kvscope::kernels
