// SPDX-License-Identifier: Apache-2.0
// GPU cachegen encoder: core/codec's Table and Chunk payloads, byte for byte.
// Kernels: (1a) one thread per quantization step (per token, per (token,
// head) or per (chunk, channel), by `scale`) computes its fp16 step;
// (1b) one thread per (layer, kind, chunk, channel) stream quantizes with
// those steps and counts its anchor/delta and raw symbols (atomics; counts
// are order-free);
// (2) one thread per (layer, kind, channel) normalises the counts into
// 16-bit frequencies and CDFs; (3) one thread per stream range-codes it into
// a fixed-capacity slot; (4) one warp per stream packs the slots. The host
// writes the varint tables and section framing.

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "cachegen_encode.h"
#include "cuda_util.h"
#include "kvscope/kernels/detail/cachegen_encode.h"
#include "kvscope/kernels/gpu_bitstream.h"

namespace kvscope::kernels {

namespace {

constexpr int kBlock = 128;

using Geom = detail::CachegenGeom;

__device__ __forceinline__ void stream_of(const Geom& g, std::uint64_t i, std::uint32_t& lk,
                                          std::uint32_t& chunk, std::uint32_t& c) {
  const std::uint64_t per_lk = static_cast<std::uint64_t>(g.chunks) * g.C;
  lk = static_cast<std::uint32_t>(i / per_lk);
  const std::uint64_t rem = i - lk * per_lk;
  chunk = static_cast<std::uint32_t>(rem / g.C);
  c = static_cast<std::uint32_t>(rem - static_cast<std::uint64_t>(chunk) * g.C);
}

__device__ __forceinline__ const float* tensor_of(const float* in, const Geom& g, std::uint32_t lk) {
  return in + static_cast<std::uint64_t>(lk) * g.C * g.T;
}

// Token t's step of stream (lk, chunk, c) is at [t * step_stride].
__device__ __forceinline__ const std::uint16_t* stream_steps(const std::uint16_t* steps, const Geom& g,
                                                             std::uint32_t lk, std::uint32_t chunk,
                                                             std::uint32_t c) {
  return steps + lk * detail::cachegen_tensor_steps(g) + detail::cachegen_chunk_step_offset(g, chunk) +
         detail::cachegen_step_base(g, c);
}

// One thread per step of every (layer, kind) tensor.
__global__ void steps_kernel(const float* __restrict__ in, Geom g, std::uint64_t count,
                             const int* __restrict__ M, std::uint16_t* __restrict__ steps,
                             std::uint32_t* flags) {
  const std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const std::uint64_t per = detail::cachegen_tensor_steps(g);
  const auto lk = static_cast<std::uint32_t>(i / per);
  const std::uint16_t st = detail::cachegen_slot_step(tensor_of(in, g, lk), g, i - lk * per, M[lk]);
  steps[i] = st;
  if (st == 0xffffu) atomicOr(flags, 1u);
}

__global__ void count_kernel(const float* __restrict__ in, Geom g, std::uint64_t streams,
                             const int* __restrict__ M, const plan::ModelRef* __restrict__ models,
                             const std::uint16_t* __restrict__ steps, std::uint32_t* counts,
                             std::uint32_t* rcounts) {
  const std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (i >= streams) return;
  std::uint32_t lk, chunk, c;
  stream_of(g, i, lk, chunk, c);
  const plan::ModelRef ref = models[static_cast<std::uint64_t>(lk) * g.C + c];
  // Invalid steps (NaN input) were flagged by steps_kernel; the call throws.
  detail::cachegen_stream_symbols(
      detail::cachegen_channel_ptr(tensor_of(in, g, lk), g, chunk, c), g.D,
      detail::cachegen_chunk_count(g, chunk), stream_steps(steps, g, lk, chunk, c),
      detail::cachegen_step_stride(g), g.group, M[lk], [&](bool anchor, int s, int r) {
        atomicAdd(counts + (anchor ? ref.anchor_offset : ref.delta_offset) + s, 1u);
        atomicAdd(rcounts + ref.anchor_offset + r, 1u);  // raw: every token an anchor
      });
}

__global__ void normalise_kernel(std::uint32_t n_models, std::uint32_t C, const int* __restrict__ M,
                                 const plan::ModelRef* __restrict__ models,
                                 const std::uint32_t* __restrict__ counts,
                                 const std::uint32_t* __restrict__ rcounts, std::uint32_t* __restrict__ freq,
                                 std::uint32_t* __restrict__ cdf, std::uint8_t* __restrict__ empty,
                                 std::uint32_t* flags) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n_models) return;
  const int m = M[j / C];
  const plan::ModelRef ref = models[j];
  const std::uint32_t offs[2] = {ref.anchor_offset, ref.delta_offset};
  const int sizes[2] = {2 * m + 1, 4 * m + 1};
  for (int w = 0; w < 2; ++w) {
    bool bad = false;
    // Raw channels: the anchor model counts every token; no delta model.
    const std::uint32_t* src = (w == 0 && ref.raw) ? rcounts : counts;
    const bool ok =
        !(w == 1 && ref.raw) && detail::normalise_counts(src + offs[w], sizes[w], freq + offs[w], bad);
    if (bad) atomicOr(flags, 2u);
    empty[2 * j + w] = ok ? 0 : 1;
    std::uint32_t acc = 0;
    cdf[offs[w]] = 0;
    for (int s = 0; s < sizes[w]; ++s) {
      acc += ok ? freq[offs[w] + s] : 0u;
      cdf[offs[w] + s + 1] = acc;
    }
  }
}

__global__ void encode_kernel(const float* __restrict__ in, Geom g, std::uint64_t first, std::uint64_t count,
                              const int* __restrict__ M, const plan::ModelRef* __restrict__ models,
                              const std::uint32_t* __restrict__ cdf, const std::uint16_t* __restrict__ steps,
                              std::uint8_t* __restrict__ scratch, std::uint32_t capacity,
                              std::uint32_t* __restrict__ lengths, std::uint32_t* flags) {
  const std::uint64_t k = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (k >= count) return;
  const std::uint64_t i = first + k;
  std::uint32_t lk, chunk, c;
  stream_of(g, i, lk, chunk, c);
  const plan::ModelRef ref = models[static_cast<std::uint64_t>(lk) * g.C + c];
  detail::CodecRangeEncoder enc;
  enc.init(scratch + k * capacity, capacity);
  const std::uint32_t* ca = cdf + ref.anchor_offset;
  const std::uint32_t* cd = cdf + ref.delta_offset;
  detail::cachegen_stream_symbols(detail::cachegen_channel_ptr(tensor_of(in, g, lk), g, chunk, c), g.D,
                                  detail::cachegen_chunk_count(g, chunk),
                                  stream_steps(steps, g, lk, chunk, c), detail::cachegen_step_stride(g),
                                  ref.raw ? 1u : g.group, M[lk], [&](bool anchor, int s, int) {
                                    const std::uint32_t* q = anchor ? ca : cd;
                                    enc.encode(q[s], q[s + 1] - q[s]);
                                  });
  enc.finish();
  if (enc.overflow) atomicOr(flags, 4u);
  lengths[k] = enc.size;
}

__global__ void pack_kernel(const std::uint8_t* __restrict__ scratch, std::uint32_t capacity,
                            const std::uint64_t* __restrict__ offsets, std::uint64_t count,
                            std::uint8_t* __restrict__ packed) {
  const std::uint64_t w = (blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x) / 32;
  const unsigned lane = threadIdx.x & 31u;
  if (w >= count) return;
  const std::uint64_t begin = offsets[w], len = offsets[w + 1] - begin;
  for (std::uint64_t b = lane; b < len; b += 32) packed[begin + b] = scratch[w * capacity + b];
}

unsigned blocks(std::uint64_t n, int block) {
  return static_cast<unsigned>((n + block - 1) / block);
}

}  // namespace

std::vector<std::vector<std::uint8_t>> gpu_encode_cachegen_sections(const kv::KVCache& cache,
                                                                    const codec::CodecConfig& config) {
  const plan::Layout L = encode::cachegen_layout(cache.shape(), config);
  cuda::require_device("gpu_encode_cachegen_sections");
  const auto wall0 = std::chrono::steady_clock::now();
  const auto& sh = L.shape;
  const Geom g = encode::geometry(L);
  const std::uint32_t lks = static_cast<std::uint32_t>(sh.layers) * 2;
  const std::uint64_t S = static_cast<std::uint64_t>(lks) * g.chunks * g.C;
  plan::ModelPool pool = plan::make_pool(L);  // offsets only: A+1 / B+1 slots per model
  const std::uint32_t n_models = static_cast<std::uint32_t>(pool.models.size());

  cuda::DeviceArray<float> d_in(cache.data().size());
  cuda::DeviceArray<int> d_M(L.M.size());
  cuda::DeviceArray<plan::ModelRef> d_models(n_models);
  cuda::DeviceArray<std::uint32_t> d_counts(pool.cdf.size()), d_rcounts(pool.cdf.size()),
      d_freq(pool.cdf.size()), d_cdf(pool.cdf.size());
  const std::uint64_t n_steps = static_cast<std::uint64_t>(lks) * detail::cachegen_tensor_steps(g);
  cuda::DeviceArray<std::uint16_t> d_steps(n_steps);
  cuda::DeviceArray<std::uint8_t> d_empty(static_cast<std::size_t>(n_models) * 2);
  cuda::DeviceArray<std::uint32_t> d_flags(1);
  d_in.upload(cache.data().data(), cache.data().size());
  d_M.upload(L.M.data(), L.M.size());
  d_models.upload(pool.models.data(), n_models);
  d_counts.zero();
  d_rcounts.zero();
  d_freq.zero();
  d_flags.zero();

  cuda::EventTimer timer;
  timer.start();
  steps_kernel<<<blocks(n_steps, kBlock), kBlock>>>(d_in.get(), g, n_steps, d_M.get(), d_steps.get(),
                                                    d_flags.get());
  count_kernel<<<blocks(S, kBlock), kBlock>>>(d_in.get(), g, S, d_M.get(), d_models.get(), d_steps.get(),
                                              d_counts.get(), d_rcounts.get());
  cuda::check(cudaGetLastError(), "gpu quantize kernels");
  {
    // Raw or anchor/delta per channel: decided on the host with the host's
    // log2, exactly as the CPU codec decides.
    std::vector<std::uint32_t> counts(pool.cdf.size()), rcounts(pool.cdf.size());
    d_counts.download(counts.data(), counts.size());
    d_rcounts.download(rcounts.data(), rcounts.size());
    cuda::check(cudaDeviceSynchronize(), "gpu encode counts");
    for (std::uint32_t j = 0; j < n_models; ++j) {
      plan::ModelRef& ref = pool.models[j];
      const auto A = static_cast<std::size_t>(2 * L.M[j / g.C] + 1);
      const auto B = static_cast<std::size_t>(4 * L.M[j / g.C] + 1);
      ref.raw =
          encode::choose_raw(L.delta, {rcounts.data() + ref.anchor_offset, A},
                             {counts.data() + ref.anchor_offset, A}, {counts.data() + ref.delta_offset, B})
              ? 1u
              : 0u;
    }
    d_models.upload(pool.models.data(), n_models);
  }
  normalise_kernel<<<blocks(n_models, kBlock), kBlock>>>(n_models, g.C, d_M.get(), d_models.get(),
                                                         d_counts.get(), d_rcounts.get(), d_freq.get(),
                                                         d_cdf.get(), d_empty.get(), d_flags.get());
  cuda::check(cudaGetLastError(), "gpu encode model kernels");
  std::uint32_t flags = 0;
  d_flags.download(&flags, 1);
  cuda::check(cudaDeviceSynchronize(), "gpu encode models");
  if (flags & 1u) throw Error(ErrorCode::InvalidArgument, "gpu encode: NaN, infinite or too large values");
  if (flags & 2u) throw Error(ErrorCode::Internal, "gpu encode: frequency normalisation failed");

  // Streams in slots of fixed capacity, a bounded batch at a time, then packed.
  const std::uint32_t capacity = static_cast<std::uint32_t>(L.chunk_tokens) * 3u + 8u;
  const std::uint64_t batch =
      std::max<std::uint64_t>(1, std::min<std::uint64_t>(S, (768ull << 20) / capacity));
  cuda::DeviceArray<std::uint8_t> d_scratch(batch * capacity);
  cuda::DeviceArray<std::uint32_t> d_lengths(batch);
  cuda::DeviceArray<std::uint64_t> d_offsets(batch + 1);
  std::vector<std::uint32_t> lengths(S);
  std::vector<std::uint8_t> packed;
  std::vector<std::uint64_t> offsets(batch + 1);
  for (std::uint64_t first = 0; first < S; first += batch) {
    const std::uint64_t n = std::min(batch, S - first);
    encode_kernel<<<blocks(n, kBlock), kBlock>>>(d_in.get(), g, first, n, d_M.get(), d_models.get(),
                                                 d_cdf.get(), d_steps.get(), d_scratch.get(), capacity,
                                                 d_lengths.get(), d_flags.get());
    cuda::check(cudaGetLastError(), "gpu encode kernel");
    d_lengths.download(lengths.data() + first, n);
    cuda::check(cudaDeviceSynchronize(), "gpu encode");
    offsets[0] = 0;
    for (std::uint64_t k = 0; k < n; ++k) offsets[k + 1] = offsets[k] + lengths[first + k];
    d_offsets.upload(offsets.data(), n + 1);
    cuda::DeviceArray<std::uint8_t> d_packed(std::max<std::uint64_t>(1, offsets[n]));
    pack_kernel<<<blocks(n * 32, 256), 256>>>(d_scratch.get(), capacity, d_offsets.get(), n, d_packed.get());
    cuda::check(cudaGetLastError(), "gpu pack kernel");
    const std::size_t old = packed.size();
    packed.resize(old + offsets[n]);
    d_packed.download(packed.data() + old, offsets[n]);
    cuda::check(cudaDeviceSynchronize(), "gpu pack");
  }
  timer.stop();
  const double kernel_ms = timer.ms();
  d_flags.download(&flags, 1);
  std::vector<std::uint32_t> freq(pool.cdf.size());
  std::vector<std::uint8_t> empty(static_cast<std::size_t>(n_models) * 2);
  std::vector<std::uint16_t> steps(n_steps);
  d_freq.download(freq.data(), freq.size());
  d_empty.download(empty.data(), empty.size());
  d_steps.download(steps.data(), n_steps);
  cuda::check(cudaDeviceSynchronize(), "gpu encode tables");
  if (flags & 4u) throw Error(ErrorCode::Internal, "gpu encode: stream exceeded its capacity bound");

  // Section payloads in container order: per (layer, kind) its table, then chunks.
  std::vector<std::vector<std::uint8_t>> out;
  out.reserve(static_cast<std::size_t>(lks) * (g.chunks + 1));
  std::uint64_t stream = 0, byte = 0;
  for (std::uint32_t lk = 0; lk < lks; ++lk) {
    const int M = L.M[lk];
    std::vector<std::uint8_t> table;
    for (std::uint32_t c = 0; c < g.C; ++c) {
      const std::size_t j = static_cast<std::size_t>(lk) * g.C + c;
      const plan::ModelRef& ref = pool.models[j];
      table.push_back(static_cast<std::uint8_t>(ref.raw));
      encode::write_model(table, freq.data() + ref.anchor_offset, 2 * M + 1, empty[2 * j] != 0);
      encode::write_model(table, freq.data() + ref.delta_offset, 4 * M + 1, empty[2 * j + 1] != 0);
    }
    out.push_back(std::move(table));
    for (std::uint32_t ch = 0; ch < g.chunks; ++ch) {
      std::vector<std::uint8_t> p;
      std::uint64_t total = 0;
      const std::uint16_t* cs =
          steps.data() + lk * detail::cachegen_tensor_steps(g) + detail::cachegen_chunk_step_offset(g, ch);
      const std::uint64_t chunk_steps = L.step_count(static_cast<int>(detail::cachegen_chunk_count(g, ch)));
      for (std::uint64_t k = 0; k < chunk_steps; ++k) {
        p.push_back(static_cast<std::uint8_t>(cs[k] & 0xff));
        p.push_back(static_cast<std::uint8_t>(cs[k] >> 8));
      }
      for (std::uint32_t c = 0; c < g.C; ++c) {
        encode::write_varint(p, lengths[stream + c]);
        total += lengths[stream + c];
      }
      p.insert(p.end(), packed.begin() + static_cast<std::ptrdiff_t>(byte),
               packed.begin() + static_cast<std::ptrdiff_t>(byte + total));
      byte += total;
      stream += g.C;
      out.push_back(std::move(p));
    }
  }
  record_gpu_timings(
      kernel_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0).count());
  return out;
}

}  // namespace kvscope::kernels
