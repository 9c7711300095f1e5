// Whole-table GPU decode and encode (format: stream_table.h).

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>

#include "cuda_util.h"
#include "gpu_kernels.cuh"
#include "kvscope/kernels/gpu_codec.h"

namespace kvscope::kernels {
namespace {

std::mutex g_timings_mutex;
GpuTimings g_timings;

void set_timings(double kernel_ms, double total_ms) {
  std::lock_guard lock(g_timings_mutex);
  g_timings = {kernel_ms, total_ms};
}

std::string flag_text(std::uint32_t f) {
  std::string s;
  if (f & detail::kFlagBadCode) s += " bad-code";
  if (f & detail::kFlagOverrun) s += " overrun";
  if (f & detail::kFlagTrailing) s += " trailing-bytes";
  if (f & detail::kFlagBadIndex) s += " bad-index";
  if (f & detail::kFlagOverflow) s += " overflow";
  return s;
}

// ---- encode kernels: one thread per (chunk, channel model) --------------

// Non-negative floats order like their bit patterns: an integer atomicMax is
// exact and independent of thread order, so the result equals the CPU's.
__global__ void anchor_absmax_kernel(const float* __restrict__ in, gpu::Geometry g, std::uint32_t* amax) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= g.streams_per_chunk) return;
  const int chunk = blockIdx.y;
  const float a = detail::anchor_absmax(in + gpu::stream_out_offset(g, chunk, j), g.head_dim,
                                        gpu::chunk_len(g, chunk), g.group_size);
  atomicMax(amax + j, __float_as_uint(a));
}

__global__ void delta_absmax_kernel(const float* __restrict__ in, gpu::Geometry g,
                                    const ChannelModel* __restrict__ models, std::uint32_t* dmax) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= g.streams_per_chunk) return;
  const int chunk = blockIdx.y;
  const float d = detail::delta_absmax(in + gpu::stream_out_offset(g, chunk, j), g.head_dim,
                                       gpu::chunk_len(g, chunk), g.group_size, models[j]);
  atomicMax(dmax + j, __float_as_uint(d));
}

__global__ void anchor_steps_kernel(ChannelModel* models, std::uint32_t n, const std::uint32_t* amax) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  models[j].anchor_step = detail::step_for(__uint_as_float(amax[j]), models[j].anchor_symbols);
}

__global__ void delta_steps_kernel(ChannelModel* models, std::uint32_t n, const std::uint32_t* dmax) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  models[j].delta_step = detail::step_for(__uint_as_float(dmax[j]), models[j].delta_symbols);
}

__global__ void count_kernel(const float* __restrict__ in, gpu::Geometry g,
                             const ChannelModel* __restrict__ models, std::uint32_t* counts) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= g.streams_per_chunk) return;
  const int chunk = blockIdx.y;
  const ChannelModel m = models[j];
  detail::quantize_stream(in + gpu::stream_out_offset(g, chunk, j), g.head_dim, gpu::chunk_len(g, chunk),
                          g.group_size, m, [&](std::uint32_t, bool anchor, int s, float) {
                            atomicAdd(counts + (anchor ? m.anchor_cdf : m.delta_cdf) + s, 1u);
                          });
}

__global__ void cdf_kernel(const ChannelModel* models, std::uint32_t n, const std::uint32_t* counts,
                           std::uint16_t* cdfs) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const ChannelModel m = models[j];
  detail::build_cdf(counts + m.anchor_cdf, m.anchor_symbols, cdfs + m.anchor_cdf);
  detail::build_cdf(counts + m.delta_cdf, m.delta_symbols, cdfs + m.delta_cdf);
}

__global__ void encode_kernel(const float* __restrict__ in, gpu::Geometry g, int first_chunk,
                              const ChannelModel* __restrict__ models, const std::uint16_t* __restrict__ cdfs,
                              std::uint8_t* scratch, std::uint32_t capacity, std::uint32_t* lengths,
                              std::uint32_t* flags) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= g.streams_per_chunk) return;
  const int chunk = first_chunk + static_cast<int>(blockIdx.y);
  const std::uint64_t k = static_cast<std::uint64_t>(blockIdx.y) * g.streams_per_chunk + j;
  std::uint32_t f = 0;
  lengths[k] =
      detail::encode_stream(in + gpu::stream_out_offset(g, chunk, j), g.head_dim, gpu::chunk_len(g, chunk),
                            g.group_size, models[j], cdfs, scratch + k * capacity, capacity, f);
  if (f != 0) atomicOr(flags, f);
}

// One warp per stream: copies its bytes from the scratch slot to the packed payload.
__global__ void compact_kernel(const std::uint8_t* __restrict__ scratch, std::uint32_t capacity,
                               const std::uint64_t* __restrict__ offsets, std::uint64_t n_streams,
                               std::uint64_t offset_base, std::uint8_t* __restrict__ payload) {
  const std::uint64_t warp = (blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (warp >= n_streams) return;
  const std::uint64_t begin = offsets[warp] - offset_base, len = offsets[warp + 1] - offsets[warp];
  for (std::uint64_t i = lane; i < len; i += 32) payload[begin + i] = scratch[warp * capacity + i];
}

unsigned blocks_for(std::uint64_t n, int block) {
  return static_cast<unsigned>((n + block - 1) / block);
}

}  // namespace

namespace gpu {
namespace {
// Block row y decodes chunk first_chunk + y.
__global__ void decode_chunks(const std::uint8_t* __restrict__ payload,
                              const std::uint64_t* __restrict__ offsets, int first_chunk, Geometry g,
                              const ChannelModel* __restrict__ models, const std::uint16_t* __restrict__ cdfs,
                              std::uint16_t* __restrict__ out, std::uint32_t* __restrict__ flags) {
  const std::uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= g.streams_per_chunk) return;
  const int chunk = first_chunk + static_cast<int>(blockIdx.y);
  const std::uint64_t k = static_cast<std::uint64_t>(blockIdx.y) * g.streams_per_chunk + j;
  const std::uint64_t begin = offsets[k], end = offsets[k + 1];
  const ChannelModel m = models[j];
  const std::uint32_t f = detail::decode_stream(
      payload + begin, static_cast<std::uint32_t>(end - begin), chunk_len(g, chunk), g.group_size, m, cdfs,
      out + stream_out_offset(g, chunk, j), static_cast<std::uint32_t>(g.head_dim));
  if (f != 0) atomicOr(flags, f);
}

}  // namespace

void launch_decode_chunks(const std::uint8_t* payload, const std::uint64_t* offsets, int first_chunk,
                          int chunks, const Geometry& g, const ChannelModel* models,
                          const std::uint16_t* cdfs, std::uint16_t* out, std::uint32_t* flags,
                          cudaStream_t stream) {
  if (chunks <= 0) return;
  decode_chunks<<<dim3(blocks_for(g.streams_per_chunk, kBlock), static_cast<unsigned>(chunks)), kBlock, 0,
                  stream>>>(payload, offsets, first_chunk, g, models, cdfs, out, flags);
  cuda::check(cudaGetLastError(), "decode kernel launch");
}
}  // namespace gpu

void record_gpu_timings(double kernel_ms, double total_ms) {
  set_timings(kernel_ms, total_ms);
}

GpuTimings last_gpu_timings() {
  std::lock_guard lock(g_timings_mutex);
  return g_timings;
}

// ---- DeviceHalfBuffer --------------------------------------------------

DeviceHalfBuffer::DeviceHalfBuffer(std::size_t elements) : size_(elements) {
  cuda::require_device("DeviceHalfBuffer");
  if (elements) cuda::check(cudaMalloc(reinterpret_cast<void**>(&data_), elements * 2), "cudaMalloc");
}
DeviceHalfBuffer::~DeviceHalfBuffer() {
  if (data_) cudaFree(data_);
}
DeviceHalfBuffer::DeviceHalfBuffer(DeviceHalfBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
DeviceHalfBuffer& DeviceHalfBuffer::operator=(DeviceHalfBuffer&& o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  return *this;
}
std::vector<std::uint16_t> DeviceHalfBuffer::download() const {
  std::vector<std::uint16_t> out(size_);
  if (size_) cuda::check(cudaMemcpy(out.data(), data_, size_ * 2, cudaMemcpyDeviceToHost), "download");
  return out;
}

// ---- decode ----------------------------------------------------------------

void gpu_decode(const StreamTable& t, DeviceHalfBuffer& out) {
  validate(t);
  cuda::require_device("gpu_decode");
  const auto wall0 = std::chrono::steady_clock::now();
  if (out.size() != t.shape.elements()) out = DeviceHalfBuffer(t.shape.elements());
  std::vector<std::uint64_t> offsets(t.streams.size() + 1);
  for (std::size_t i = 0; i < t.streams.size(); ++i) offsets[i] = t.streams[i].byte_offset;
  offsets.back() = t.payload.size();
  cuda::DeviceArray<std::uint8_t> d_payload(t.payload.size());
  cuda::DeviceArray<std::uint64_t> d_offsets(offsets.size());
  cuda::DeviceArray<ChannelModel> d_models(t.models.size());
  cuda::DeviceArray<std::uint16_t> d_cdfs(t.cdfs.size());
  cuda::DeviceArray<std::uint32_t> d_flags(1);
  d_payload.upload(t.payload.data(), t.payload.size());
  d_offsets.upload(offsets.data(), offsets.size());
  d_models.upload(t.models.data(), t.models.size());
  d_cdfs.upload(t.cdfs.data(), t.cdfs.size());
  d_flags.zero();
  const gpu::Geometry g = gpu::geometry_of(t);
  cuda::EventTimer timer;
  timer.start();
  gpu::launch_decode_chunks(d_payload.get(), d_offsets.get(), 0, t.chunks(), g, d_models.get(), d_cdfs.get(),
                            out.data(), d_flags.get(), nullptr);
  timer.stop();
  std::uint32_t flags = 0;
  d_flags.download(&flags, 1);
  cuda::check(cudaDeviceSynchronize(), "gpu_decode");
  const double kernel_ms = timer.ms();
  set_timings(kernel_ms,
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0).count());
  if (flags != 0)
    throw Error(ErrorCode::Format,
                "gpu decode: corrupt entropy-coded stream (" + flag_text(flags).substr(1) + ")");
}

kv::KVCache gpu_decode(const StreamTable& t) {
  DeviceHalfBuffer out;
  gpu_decode(t, out);
  return fp16_to_cache(t.shape, out.download());
}

// ---- encode ------------------------------------------------------------

StreamTable gpu_encode(const kv::KVCache& cache, const EncodeParams& params) {
  const kv::CacheShape& s = cache.shape();
  validate(params, s);
  cuda::require_device("gpu_encode");
  const auto wall0 = std::chrono::steady_clock::now();
  StreamTable t;
  t.shape = s;
  t.chunk_tokens = params.chunk_tokens;
  t.group_size = params.group_size;
  t.streams = canonical_streams(s, params.chunk_tokens);
  const std::size_t n_models = t.streams_per_chunk();
  const int chunks = t.chunks();
  const int channels = s.channels();

  // Symbol counts and CDF offsets are known from the parameters alone.
  t.models.resize(n_models);
  std::uint32_t cdf_size = 0;
  for (std::size_t m = 0; m < n_models; ++m) {
    ChannelModel& cm = t.models[m];
    cm.anchor_symbols = static_cast<std::uint16_t>(params.anchor_bins);
    cm.delta_symbols = static_cast<std::uint16_t>(delta_bins(
        params, s.layers, static_cast<int>(m / (2 * channels)), static_cast<kv::Kind>((m / channels) % 2)));
    cm.anchor_cdf = cdf_size;
    cm.delta_cdf = cdf_size + cm.anchor_symbols;
    cdf_size += cm.anchor_symbols + cm.delta_symbols;
  }
  t.cdfs.resize(cdf_size);

  const gpu::Geometry g = gpu::geometry_of(t);
  cuda::DeviceArray<float> d_in(cache.data().size());
  cuda::DeviceArray<ChannelModel> d_models(n_models);
  cuda::DeviceArray<std::uint32_t> d_amax(n_models), d_dmax(n_models), d_counts(cdf_size), d_flags(1);
  cuda::DeviceArray<std::uint16_t> d_cdfs(cdf_size);
  d_in.upload(cache.data().data(), cache.data().size());
  d_models.upload(t.models.data(), n_models);
  d_amax.zero();
  d_dmax.zero();
  d_counts.zero();
  d_flags.zero();

  cuda::EventTimer timer;
  timer.start();
  const dim3 grid(blocks_for(n_models, gpu::kBlock), chunks);
  const unsigned model_blocks = blocks_for(n_models, gpu::kBlock);
  const auto nm = static_cast<std::uint32_t>(n_models);
  anchor_absmax_kernel<<<grid, gpu::kBlock>>>(d_in.get(), g, d_amax.get());
  anchor_steps_kernel<<<model_blocks, gpu::kBlock>>>(d_models.get(), nm, d_amax.get());
  delta_absmax_kernel<<<grid, gpu::kBlock>>>(d_in.get(), g, d_models.get(), d_dmax.get());
  delta_steps_kernel<<<model_blocks, gpu::kBlock>>>(d_models.get(), nm, d_dmax.get());
  count_kernel<<<grid, gpu::kBlock>>>(d_in.get(), g, d_models.get(), d_counts.get());
  cdf_kernel<<<model_blocks, gpu::kBlock>>>(d_models.get(), nm, d_counts.get(), d_cdfs.get());
  cuda::check(cudaGetLastError(), "encode model kernels");

  // Streams are encoded a batch of chunks at a time into fixed-capacity
  // slots (bounded scratch), then packed by prefix sums of their lengths.
  const std::uint32_t capacity = detail::stream_capacity(static_cast<std::uint32_t>(params.chunk_tokens));
  const std::uint64_t slot_bytes = static_cast<std::uint64_t>(capacity) * n_models;
  const int batch = static_cast<int>(
      std::max<std::uint64_t>(1, std::min<std::uint64_t>(chunks, (512ull << 20) / slot_bytes)));
  cuda::DeviceArray<std::uint8_t> d_scratch(slot_bytes * batch);
  cuda::DeviceArray<std::uint32_t> d_lengths(n_models * batch);
  cuda::DeviceArray<std::uint64_t> d_offsets(n_models * batch + 1);
  std::vector<std::uint32_t> lengths(n_models * batch);
  std::vector<std::uint64_t> offsets(n_models * batch + 1);
  std::vector<std::vector<std::uint8_t>> parts;
  std::uint64_t total = 0;
  double kernel_ms = 0;
  for (int c0 = 0; c0 < chunks; c0 += batch) {
    const int nc = std::min(batch, chunks - c0);
    const std::uint64_t n = n_models * nc;
    encode_kernel<<<dim3(blocks_for(n_models, gpu::kBlock), nc), gpu::kBlock>>>(
        d_in.get(), g, c0, d_models.get(), d_cdfs.get(), d_scratch.get(), capacity, d_lengths.get(),
        d_flags.get());
    cuda::check(cudaGetLastError(), "encode kernel launch");
    d_lengths.download(lengths.data(), n);
    cuda::check(cudaDeviceSynchronize(), "gpu_encode");
    offsets[0] = total;
    for (std::uint64_t i = 0; i < n; ++i) {
      t.streams[static_cast<std::size_t>(c0) * n_models + i].byte_offset = offsets[i];
      t.streams[static_cast<std::size_t>(c0) * n_models + i].byte_length = lengths[i];
      offsets[i + 1] = offsets[i] + lengths[i];
    }
    const std::uint64_t part = offsets[n] - total;
    d_offsets.upload(offsets.data(), n + 1);
    cuda::DeviceArray<std::uint8_t> d_part(part);
    compact_kernel<<<blocks_for(n * 32, 256), 256>>>(d_scratch.get(), capacity, d_offsets.get(), n, total,
                                                     d_part.get());
    cuda::check(cudaGetLastError(), "compact kernel launch");
    parts.emplace_back(part);
    d_part.download(parts.back().data(), part);
    cuda::check(cudaDeviceSynchronize(), "gpu_encode compact");
    total += part;
  }
  timer.stop();
  kernel_ms = timer.ms();
  std::uint32_t flags = 0;
  d_flags.download(&flags, 1);
  d_models.download(t.models.data(), n_models);
  d_cdfs.download(t.cdfs.data(), cdf_size);
  cuda::check(cudaDeviceSynchronize(), "gpu_encode tables");
  if (flags != 0) throw Error(ErrorCode::Internal, "gpu encode: stream exceeded its capacity bound");
  t.payload.reserve(total);
  for (auto& p : parts) t.payload.insert(t.payload.end(), p.begin(), p.end());
  seal(t);
  set_timings(kernel_ms,
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0).count());
  return t;
}

}  // namespace kvscope::kernels
