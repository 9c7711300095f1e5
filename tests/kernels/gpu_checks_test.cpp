// SPDX-License-Identifier: Apache-2.0
// GPU vs CPU: the kernels must produce exactly what the CPU reference
// produces. The checks live in kernels/tools/gpu_checks.cpp so that
// `kvscope-gpu-bench --check` can run them where GoogleTest is missing; here
// each is one test. All skip, with the reason, without a CUDA device.

#include "gpu_checks.h"

#include <gtest/gtest.h>

#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "kvscope/kernels/device.h"
#include "kvscope/kernels/gpu_bitstream.h"
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
  const auto bytes = codec::encode(cache, {"cachegen", {}}).bytes;
  auto expect_unsupported = [](auto&& call, const char* what) {
    try {
      call();
      ADD_FAILURE() << what << " ran without a device";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Unsupported) << what << ": " << e.what();
    }
  };
  expect_unsupported([&] { gpu_encode_cachegen(cache, {"cachegen", {}}); }, "gpu_encode_cachegen");
  expect_unsupported([&] { gpu_quantize(cache, 8); }, "gpu_quantize");
  expect_unsupported([&] { gpu_decode_bitstream(bytes); }, "gpu_decode_bitstream");
}

// Without a device decode_auto decodes on the CPU and says why.
TEST(Device, DecodeAutoWithoutDeviceSaysWhy) {
  if (cuda_device_available()) GTEST_SKIP() << "a CUDA device is present";
  const auto cache = testing::make_cache({2, 2, 40, 4}, testing::Pattern::Realistic, 2, 1);
  const auto bytes = codec::encode(cache, {"cachegen", {{"chunk_tokens", "16"}}}).bytes;
  const AutoDecodeResult r = decode_auto(bytes);
  EXPECT_EQ(r.backend, "cpu");
  EXPECT_EQ(r.fallback_reason, "no CUDA device (" + cpu_fallback_reason() + ")");
  EXPECT_EQ(r.cache.data().size(), cache.data().size());
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
