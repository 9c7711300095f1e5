// SPDX-License-Identifier: Apache-2.0
// kvscope-gpu-bench: throughput of the GPU path on core/codec's bitstream
// (docs/bitstream.md) for a Mistral-7B-shaped cache (32 layers, 8 KV heads,
// head_dim 128, 8192 tokens by default; --shape llama-70b: 80 layers) with
// realistic synthetic statistics, cachegen at its default settings: GPU
// encode (byte-identical to codec::encode), GPU decode (entropy decode and
// dequantize in one kernel, fp16 out; bit-exact with codec::decode), the
// section-streaming decoder, and the int8 quantizer. A plain main (no Google
// Benchmark) so it builds in the codec-only configuration. Prints "SKIP ..."
// and exits 0 without a device.
//
// Usage: kvscope-gpu-bench [--shape mistral-7b|llama-70b] [--layers N] [--heads N] [--dim N]
//                          [--tokens N] [--reps N] [--check-tokens N] [--lanes N] [--chunk-tokens N]
//        kvscope-gpu-bench --check     (the GPU-vs-CPU checks of tools/gpu_checks.h)
//        kvscope-gpu-bench --backend   (prints the backend; exit 3 without a device)
// Exit status: 0 on success or skip, 1 when a check fails, 2 on bad usage.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_checks.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/codec.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kernels/device.h"
#include "kvscope/kernels/gpu_bitstream.h"
#include "kvscope/kernels/quantize.h"
#include "synthetic_cache.h"

namespace {

using namespace kvscope;
using namespace kvscope::kernels;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
  bool check = false;
  bool backend = false;
  kv::CacheShape shape{32, 8, 8192, 128};
  int reps = 3;
  int check_tokens = 1024;
  int lanes = 3;
  int chunk_tokens = 1024;  ///< cachegen's default
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (key == "--check" || key == "--backend") {
      (key == "--check" ? o.check : o.backend) = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", key.c_str());
      std::exit(2);
    }
    if (key == "--shape") {
      const std::string name = argv[i + 1];
      if (name == "mistral-7b") {
        o.shape = {32, 8, 8192, 128};
      } else if (name == "llama-70b") {
        o.shape = {80, 8, 8192, 128};
      } else {
        std::fprintf(stderr, "--shape must be mistral-7b or llama-70b\n");
        std::exit(2);
      }
      continue;
    }
    const int v = std::atoi(argv[i + 1]);
    if (key == "--layers")
      o.shape.layers = v;
    else if (key == "--heads")
      o.shape.kv_heads = v;
    else if (key == "--dim")
      o.shape.head_dim = v;
    else if (key == "--tokens")
      o.shape.tokens = v;
    else if (key == "--reps")
      o.reps = std::max(1, v);
    else if (key == "--check-tokens")
      o.check_tokens = v;
    else if (key == "--lanes")
      o.lanes = v;
    else if (key == "--chunk-tokens")
      o.chunk_tokens = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows through pipes (tee)
  const Options opt = parse(argc, argv);
  std::printf("backend: %s\n", compute_backend().c_str());
  if (opt.backend) {
    if (!cuda_device_available()) std::printf("reason: %s\n", cpu_fallback_reason().c_str());
    return cuda_device_available() ? 0 : 3;
  }
  if (!cuda_device_available()) {
    std::printf("SKIP: no CUDA device (%s)\n", cpu_fallback_reason().c_str());
    return 0;
  }
  if (opt.check) {
    int failed = 0;
    for (const auto& c : checks::all_checks()) {
      const auto t = Clock::now();
      std::string failure;
      try {
        failure = c.run();
      } catch (const Error& e) {
        failure = std::string("threw: ") + e.what();
      }
      std::printf("%s %-24s %6.2f s  %s%s%s\n", failure.empty() ? "PASS" : "FAIL", c.name.c_str(),
                  seconds_since(t), c.what.c_str(), failure.empty() ? "" : ": ", failure.c_str());
      failed += failure.empty() ? 0 : 1;
    }
    std::printf("RESULT checks=%s failed=%d of %zu\n", failed ? "FAIL" : "pass", failed,
                checks::all_checks().size());
    return failed ? 1 : 0;
  }
  if (opt.shape.layers <= 0 || opt.shape.kv_heads <= 0 || opt.shape.head_dim <= 0 || opt.shape.tokens <= 0) {
    std::fprintf(stderr, "shape must be positive\n");
    return 2;
  }
  const kv::CacheShape& s = opt.shape;
  const double fp16_gb = double(s.fp16_bytes()) / 1e9;
  std::printf("cache: %d layers x %d kv heads x %d tokens x %d dim = %.3f GB at fp16\n", s.layers, s.kv_heads,
              s.tokens, s.head_dim, fp16_gb);
  auto t0 = Clock::now();
  const kv::KVCache cache = testing::make_cache(s, testing::Pattern::Realistic, 2024);
  std::printf("synthetic cache generated in %.2f s\n", seconds_since(t0));

  bool ok = true;

  // ---- core/codec cachegen bitstream: CPU encode, GPU decode -------------
  t0 = Clock::now();
  const auto encoded =
      codec::encode(cache, {"cachegen", {{"chunk_tokens", std::to_string(opt.chunk_tokens)}}});
  const double cpu_enc_s = seconds_since(t0);
  const std::vector<std::uint8_t>& bits = encoded.bytes;
  std::printf(
      "cachegen (core/codec, chunk_tokens %d, default scale=token): %.1f MB, %.3f bits/element, %.2fx vs "
      "fp16; CPU encode %.2f s "
      "(%.2f GB/s, all threads)\n",
      opt.chunk_tokens, bits.size() / 1e6, encoded.size.bits_per_element(), encoded.size.ratio_vs_fp16(),
      cpu_enc_s, fp16_gb / cpu_enc_s);
  double genc_ms = 1e30, genc_total = 1e30;
  {
    const codec::CodecConfig cfg{"cachegen", {{"chunk_tokens", std::to_string(opt.chunk_tokens)}}};
    std::vector<std::vector<std::uint8_t>> sections;
    for (int r = 0; r < opt.reps + 1; ++r) {
      sections = gpu_encode_cachegen_sections(cache, cfg);
      if (r == 0) continue;
      genc_ms = std::min(genc_ms, last_gpu_timings().kernel_ms);
      genc_total = std::min(genc_total, last_gpu_timings().total_ms);
    }
    const auto info = codec::inspect_stream(bits);
    bool same = sections.size() == info.sections.size();
    for (std::size_t i = 0; same && i < sections.size(); ++i) {
      const auto& sec = info.sections[i];
      same = sections[i].size() == sec.payload_bytes &&
             std::equal(sections[i].begin(), sections[i].end(),
                        bits.begin() + static_cast<std::ptrdiff_t>(sec.payload_offset));
    }
    std::printf(
        "gpu cachegen encode (section payloads): %.2f ms on the GPU incl. packing (%.1f GB/s of fp16 input), "
        "%.2f ms end to end incl. upload and table writing (%.1f GB/s); == codec::encode payloads: %s\n",
        genc_ms, fp16_gb / (genc_ms / 1e3), genc_total, fp16_gb / (genc_total / 1e3), same ? "yes" : "NO");
    if (!same) ok = false;
  }
  DeviceHalfBuffer bout;
  double bs_kernel = 1e30, bs_total = 1e30;
  for (int r = 0; r < opt.reps + 1; ++r) {
    gpu_decode_bitstream(bits, bout);
    if (r == 0) continue;
    bs_kernel = std::min(bs_kernel, last_gpu_timings().kernel_ms);
    bs_total = std::min(bs_total, last_gpu_timings().total_ms);
  }
  std::printf(
      "gpu decode of the cachegen bitstream: %.2f ms in kernels (%.1f GB/s of fp16 output), %.2f ms end to "
      "end incl. CRC, parsing and upload (%.1f GB/s)\n",
      bs_kernel, fp16_gb / (bs_kernel / 1e3), bs_total, fp16_gb / (bs_total / 1e3));
  double sec_s = 1e30;
  {
    const auto info = codec::inspect_stream(bits);
    const std::span<const std::uint8_t> b(bits);
    const auto ch = b.subspan(info.header_bytes - 4 - info.codec_header_bytes, info.codec_header_bytes);
    for (int r = 0; r < opt.reps; ++r) {
      t0 = Clock::now();
      GpuSectionDecoder dec(info, ch, opt.lanes, 32u << 20);
      for (std::size_t i = 0; i < info.sections.size(); ++i) {
        const auto& s = info.sections[i];
        dec.push_section(i, b.subspan(s.offset, s.header_bytes + s.payload_bytes));
      }
      dec.finish();
      sec_s = std::min(sec_s, seconds_since(t0));
      if (r == 0 && dec.output().download() != bout.download()) {
        std::printf("FAIL: streamed section decode differs from whole decode\n");
        ok = false;
      }
    }
  }
  std::printf(
      "gpu streamed section decode (32 MB batches, %d lanes, incl. CRC, planning, staging, H2D): %.2f ms "
      "(%.1f GB/s)\n",
      opt.lanes, sec_s * 1e3, fp16_gb / sec_s);
  {
    t0 = Clock::now();
    const kv::KVCache cpu = codec::decode(bits);
    const double cpu_dec_s = seconds_since(t0);
    const auto gpu = bout.download();
    bool same = gpu.size() == cpu.data().size();
    for (std::size_t i = 0; same && i < gpu.size(); ++i) same = gpu[i] == float_to_half(cpu.data()[i]);
    std::printf(
        "check: gpu decode == round_to_half(codec::decode) on the full cache: %s (CPU decode %.2f s, %.2f "
        "GB/s, all threads)\n",
        same ? "yes" : "NO", cpu_dec_s, fp16_gb / cpu_dec_s);
    if (!same) ok = false;
  }
  const double headline_decode = fp16_gb / (bs_kernel / 1e3);

  // ---- int8/int4 (the paper's quantization baseline) --------------------
  double q8_ms = 1e30;
  for (int r = 0; r < opt.reps + 1; ++r) {
    t0 = Clock::now();
    const QuantizedCache q8 = gpu_quantize(cache, 8);
    if (r > 0) q8_ms = std::min(q8_ms, seconds_since(t0) * 1e3);
  }
  std::printf("gpu int8 quantize incl. copies: %.2f ms (%.1f GB/s)\n", q8_ms, fp16_gb / (q8_ms / 1e3));
  const int ct = std::min(opt.check_tokens, s.tokens);
  if (ct > 0) {
    const kv::KVCache part = cache.slice_tokens(0, ct);
    const QuantizedCache c8 = cpu_quantize(part, 8), g8 = gpu_quantize(part, 8);
    const QuantizedCache c4 = cpu_quantize(part, 4), g4 = gpu_quantize(part, 4);
    const bool qsame =
        c8.values == g8.values && c8.scales == g8.scales && c4.values == g4.values && c4.scales == g4.scales;
    std::printf("check: gpu int8/int4 == cpu on the first %d tokens: %s\n", ct, qsame ? "yes" : "NO");
    if (!qsame) ok = false;
  }
  std::printf(
      "RESULT device=\"%s\" shape=%dx%dx%dx%d cachegen_decode_kernel_GBps=%.1f "
      "cachegen_decode_end_to_end_GBps=%.1f cachegen_streamed_GBps=%.1f cachegen_encode_gpu_GBps=%.1f "
      "cachegen_encode_end_to_end_GBps=%.1f cachegen_bits_per_element=%.3f int8_quantize_GBps=%.1f "
      "checks=%s\n",
      device_name().c_str(), s.layers, s.kv_heads, s.tokens, s.head_dim, headline_decode,
      fp16_gb / (bs_total / 1e3), fp16_gb / sec_s, fp16_gb / (genc_ms / 1e3), fp16_gb / (genc_total / 1e3),
      encoded.size.bits_per_element(), fp16_gb / (q8_ms / 1e3), ok ? "pass" : "FAIL");
  return ok ? 0 : 1;
} catch (const kvscope::Error& e) {
  std::fprintf(stderr, "kvscope-gpu-bench: %s\n", e.what());
  return 1;
}
