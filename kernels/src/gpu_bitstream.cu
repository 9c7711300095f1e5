// SPDX-License-Identifier: Apache-2.0
// GPU decode of core/codec bitstreams (see gpu_bitstream.h).
//
// Thread mapping: cachegen has one independent range-coded stream per
// (layer, kind, channel, chunk); one thread decodes one stream (CDF binary
// search per symbol), reading each token's step from the chunk's step area
// (per token, per (token, head) or per channel: the same address for the
// whole warp with scale=token) and writes its channel's fp16 values with
// stride head_dim. Streams of a section are in channel order, so the 32 threads of
// a warp write 32 neighbouring dims of one head per token: 64-byte coalesced
// stores. int8/int4/fp16 sections: one thread per value.

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "bitstream_plan.h"
#include "cuda_util.h"
#include "kvscope/kernels/detail/bitstream_decode.h"
#include "kvscope/kernels/device.h"
#include "kvscope/kernels/gpu_bitstream.h"

namespace kvscope::kernels {
namespace {

constexpr int kBlock = 128;

__global__ void cachegen_kernel(const std::uint8_t* __restrict__ bytes,
                                const plan::StreamDesc* __restrict__ streams, std::uint32_t count,
                                const plan::ModelRef* __restrict__ models,
                                const std::uint32_t* __restrict__ cdf, std::uint32_t group_size,
                                std::uint32_t stride, std::uint16_t* __restrict__ out, std::uint32_t* flags) {
  const std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const plan::StreamDesc d = streams[i];
  const plan::ModelRef m = models[d.model];
  const std::uint32_t f = detail::decode_cachegen_stream(
      bytes + d.byte_offset, d.byte_length, d.tokens, m.raw ? 1u : group_size, d.M, bytes + d.step_offset,
      d.step_stride, {cdf + m.anchor_offset, m.anchor_n}, {cdf + m.delta_offset, m.delta_n},
      out + d.out_offset, stride);
  if (f != 0) atomicOr(flags, f);
}

// Block row y handles section y; blocks of a row stride over its values.
__global__ void section_kernel(const std::uint8_t* __restrict__ bytes,
                               const plan::SectionDesc* __restrict__ sections, detail::SectionCodec codec,
                               std::uint32_t heads, std::uint32_t T, std::uint32_t D,
                               std::uint16_t* __restrict__ out, std::uint32_t* flags) {
  const plan::SectionDesc s = sections[blockIdx.y];
  const std::uint64_t values = static_cast<std::uint64_t>(heads) * s.tokens * D;
  std::uint32_t f = 0;
  for (std::uint64_t k = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; k < values;
       k += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    f |= detail::decode_section_element(bytes + s.byte_offset, s.tokens, codec, k, T, D, out + s.out_offset);
  }
  if (f != 0) atomicOr(flags, f);
}

template <class T>
void grow_pinned(cuda::PinnedArray<T>& a, std::size_t used, std::size_t need) {
  if (a.size() >= need) return;
  cuda::PinnedArray<T> bigger(std::max(need, a.size() * 2 + 1024));
  if (used) std::memcpy(bigger.get(), a.get(), used * sizeof(T));
  a = std::move(bigger);
}

template <class T>
void fit_device(cuda::DeviceArray<T>& a, std::size_t need) {
  if (a.size() < need) a = cuda::DeviceArray<T>(need + need / 4);
}

}  // namespace

struct GpuSectionDecoder::Impl {
  struct Lane {
    cudaStream_t stream{};
    cudaEvent_t start{}, stop{};
    bool busy = false;
    cuda::PinnedArray<std::uint8_t> bytes;
    cuda::PinnedArray<plan::StreamDesc> streams;
    cuda::PinnedArray<plan::SectionDesc> sections;
    std::size_t n_bytes = 0, n_streams = 0, n_sections = 0;
    cuda::DeviceArray<std::uint8_t> d_bytes;
    cuda::DeviceArray<plan::StreamDesc> d_streams;
    cuda::DeviceArray<plan::SectionDesc> d_sections;
  };

  codec::StreamInfo info;
  plan::Layout layout;
  plan::ModelPool pool;
  cuda::DeviceArray<std::uint32_t> d_cdf;
  cuda::DeviceArray<plan::ModelRef> d_models;
  cuda::DeviceArray<std::uint32_t> d_flags;
  DeviceHalfBuffer output;
  std::vector<Lane> lanes;
  std::size_t lane = 0;  // the lane being staged
  std::size_t batch_bytes = 0;
  std::size_t next_section = 0;
  bool verify_crc = true;
  double kernel_ms = 0;

  ~Impl() {
    for (Lane& l : lanes) {
      if (l.stream) {
        cudaStreamSynchronize(l.stream);
        cudaStreamDestroy(l.stream);
      }
      if (l.start) cudaEventDestroy(l.start);
      if (l.stop) cudaEventDestroy(l.stop);
    }
  }

  // Waits for a lane's previous batch before its buffers are reused.
  void drain(Lane& l) {
    if (!l.busy) return;
    cuda::check(cudaStreamSynchronize(l.stream), "gpu decode batch");
    float ms = 0;
    cuda::check(cudaEventElapsedTime(&ms, l.start, l.stop), "cudaEventElapsedTime");
    kernel_ms += ms;
    l.busy = false;
  }

  void flush() {
    Lane& l = lanes[lane];
    if (l.n_streams == 0 && l.n_sections == 0) return;
    fit_device(l.d_bytes, l.n_bytes);
    fit_device(l.d_streams, l.n_streams);
    fit_device(l.d_sections, l.n_sections);
    l.d_bytes.upload(l.bytes.get(), l.n_bytes, l.stream);
    l.d_streams.upload(l.streams.get(), l.n_streams, l.stream);
    l.d_sections.upload(l.sections.get(), l.n_sections, l.stream);
    cuda::check(cudaEventRecord(l.start, l.stream), "cudaEventRecord");
    const auto& sh = layout.shape;
    if (l.n_streams) {
      cachegen_kernel<<<static_cast<unsigned>((l.n_streams + kBlock - 1) / kBlock), kBlock, 0, l.stream>>>(
          l.d_bytes.get(), l.d_streams.get(), static_cast<std::uint32_t>(l.n_streams), d_models.get(),
          d_cdf.get(), static_cast<std::uint32_t>(layout.group_size), static_cast<std::uint32_t>(sh.head_dim),
          output.data(), d_flags.get());
    }
    if (l.n_sections) {
      const auto codec = layout.codec == plan::CodecId::Int8   ? detail::SectionCodec::Int8
                         : layout.codec == plan::CodecId::Int4 ? detail::SectionCodec::Int4
                                                               : detail::SectionCodec::Fp16;
      const std::uint64_t per = static_cast<std::uint64_t>(sh.kv_heads) * layout.chunk_tokens * sh.head_dim;
      const unsigned bx = static_cast<unsigned>(std::min<std::uint64_t>(64, (per + 255) / 256));
      section_kernel<<<dim3(bx, static_cast<unsigned>(l.n_sections)), 256, 0, l.stream>>>(
          l.d_bytes.get(), l.d_sections.get(), codec, static_cast<std::uint32_t>(sh.kv_heads),
          static_cast<std::uint32_t>(sh.tokens), static_cast<std::uint32_t>(sh.head_dim), output.data(),
          d_flags.get());
    }
    cuda::check(cudaGetLastError(), "gpu decode kernel launch");
    cuda::check(cudaEventRecord(l.stop, l.stream), "cudaEventRecord");
    l.busy = true;
    l.n_bytes = l.n_streams = l.n_sections = 0;
    lane = (lane + 1) % lanes.size();
    drain(lanes[lane]);
  }
};

GpuSectionDecoder::GpuSectionDecoder(const codec::StreamInfo& info,
                                     std::span<const std::uint8_t> codec_header, int lanes,
                                     std::size_t batch_bytes)
    : impl_(std::make_unique<Impl>()) {
  cuda::require_device("GpuSectionDecoder");
  if (lanes < 1 || lanes > 16)
    throw Error(ErrorCode::InvalidArgument, "GpuSectionDecoder: lanes must be in [1, 16]");
  if (batch_bytes < 1 || batch_bytes > (1ull << 31))
    throw Error(ErrorCode::InvalidArgument, "GpuSectionDecoder: batch_bytes must be in [1, 2^31]");
  Impl& s = *impl_;
  s.info = info;
  s.layout = plan::read_layout(info, codec_header);
  plan::check_sections(info, s.layout);
  s.pool = plan::make_pool(s.layout);
  s.d_cdf = cuda::DeviceArray<std::uint32_t>(std::max<std::size_t>(1, s.pool.cdf.size()));
  s.d_models = cuda::DeviceArray<plan::ModelRef>(std::max<std::size_t>(1, s.pool.models.size()));
  s.d_flags = cuda::DeviceArray<std::uint32_t>(1);
  s.d_flags.zero();
  s.output = DeviceHalfBuffer(s.layout.shape.elements());
  s.batch_bytes = batch_bytes;
  s.lanes.resize(static_cast<std::size_t>(lanes));
  for (auto& l : s.lanes) {
    cuda::check(cudaStreamCreateWithFlags(&l.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda::check(cudaEventCreate(&l.start), "cudaEventCreate");
    cuda::check(cudaEventCreate(&l.stop), "cudaEventCreate");
  }
  cuda::check(cudaDeviceSynchronize(), "GpuSectionDecoder setup");
}

GpuSectionDecoder::~GpuSectionDecoder() = default;

void GpuSectionDecoder::push_section(std::size_t index, std::span<const std::uint8_t> section) {
  Impl& s = *impl_;
  if (index != s.next_section || index >= s.info.sections.size()) {
    throw Error(ErrorCode::Format, "gpu decode: section " + std::to_string(index) +
                                       " out of order (expected " + std::to_string(s.next_section) + ")");
  }
  const codec::SectionInfo& si = s.info.sections[index];
  if (section.size() != si.header_bytes + si.payload_bytes) {
    throw Error(ErrorCode::Format, "gpu decode: section " + std::to_string(index) + " has the wrong size");
  }
  if (s.verify_crc && plan::section_crc(section, si.header_bytes) != si.crc) {
    throw Error(ErrorCode::Checksum, "gpu decode: section " + std::to_string(index) + " fails its CRC-32C");
  }
  const auto payload = section.subspan(si.header_bytes);
  ++s.next_section;
  if (si.kind == codec::SectionKind::Table) {
    const int lk = si.layer * 2 + static_cast<int>(si.kv);
    plan::read_table(s.layout, lk, payload, s.pool);
    const std::size_t C = static_cast<std::size_t>(s.layout.shape.channels());
    const std::size_t m0 = static_cast<std::size_t>(lk) * C;
    const std::size_t c0 = s.pool.models[m0].anchor_offset;
    const std::size_t c1 =
        m0 + C < s.pool.models.size() ? s.pool.models[m0 + C].anchor_offset : s.pool.cdf.size();
    cuda::check(cudaMemcpy(s.d_models.get() + m0, s.pool.models.data() + m0, C * sizeof(plan::ModelRef),
                           cudaMemcpyHostToDevice),
                "upload models");
    cuda::check(cudaMemcpy(s.d_cdf.get() + c0, s.pool.cdf.data() + c0, (c1 - c0) * sizeof(std::uint32_t),
                           cudaMemcpyHostToDevice),
                "upload CDFs");
    // A pageable cudaMemcpy may return before its DMA lands; the lanes are
    // non-blocking streams, so wait for the legacy stream before any batch
    // of this (layer, kind) can run.
    cuda::check(cudaStreamSynchronize(nullptr), "upload tables");
    return;
  }
  if (payload.size() > 0xffffffffu - (64u << 20)) {
    throw Error(ErrorCode::Unsupported, "gpu decode: section larger than the 4 GiB batch limit");
  }
  // Batch offsets are 32-bit and grid rows are limited to 65535 sections.
  if (s.lanes[s.lane].n_bytes + payload.size() > 0xffffffffu || s.lanes[s.lane].n_sections >= 65535)
    s.flush();
  Impl::Lane& l = s.lanes[s.lane];
  std::vector<plan::StreamDesc> streams;
  std::vector<plan::SectionDesc> sections;
  plan::plan_chunk(s.layout, s.pool, si, payload, static_cast<std::uint32_t>(l.n_bytes), streams, sections);
  grow_pinned(l.bytes, l.n_bytes, l.n_bytes + payload.size());
  grow_pinned(l.streams, l.n_streams, l.n_streams + streams.size());
  grow_pinned(l.sections, l.n_sections, l.n_sections + sections.size());
  std::memcpy(l.bytes.get() + l.n_bytes, payload.data(), payload.size());
  if (!streams.empty())
    std::memcpy(l.streams.get() + l.n_streams, streams.data(), streams.size() * sizeof(streams[0]));
  if (!sections.empty())
    std::memcpy(l.sections.get() + l.n_sections, sections.data(), sections.size() * sizeof(sections[0]));
  l.n_bytes += payload.size();
  l.n_streams += streams.size();
  l.n_sections += sections.size();
  if (l.n_bytes >= s.batch_bytes) s.flush();
}

void GpuSectionDecoder::finish() {
  Impl& s = *impl_;
  s.flush();
  for (auto& l : s.lanes) s.drain(l);
  if (s.next_section != s.info.sections.size()) {
    throw Error(ErrorCode::Format, "gpu decode: only " + std::to_string(s.next_section) + " of " +
                                       std::to_string(s.info.sections.size()) + " sections arrived");
  }
  std::uint32_t flags = 0;
  s.d_flags.download(&flags, 1);
  cuda::check(cudaDeviceSynchronize(), "gpu decode flags");
  if (flags != 0) throw Error(ErrorCode::Format, detail::codec_flags_error(flags));
}

double GpuSectionDecoder::kernel_ms() const {
  return impl_->kernel_ms;
}
const DeviceHalfBuffer& GpuSectionDecoder::output() const {
  return impl_->output;
}
DeviceHalfBuffer GpuSectionDecoder::take_output() {
  return std::move(impl_->output);
}

void gpu_decode_bitstream(std::span<const std::uint8_t> bytes, DeviceHalfBuffer& out) {
  const auto wall0 = std::chrono::steady_clock::now();
  const codec::StreamInfo info = codec::inspect_stream(bytes, true);  // checks every CRC
  GpuSectionDecoder dec(info, plan::codec_header_of(info, bytes), 2, 256u << 20);
  dec.impl_->verify_crc = false;  // just verified
  for (std::size_t i = 0; i < info.sections.size(); ++i) {
    const auto& s = info.sections[i];
    dec.push_section(i, bytes.subspan(s.offset, s.header_bytes + s.payload_bytes));
  }
  dec.finish();
  out = dec.take_output();
  record_gpu_timings(
      dec.kernel_ms(),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0).count());
}

kv::KVCache gpu_decode_bitstream(std::span<const std::uint8_t> bytes) {
  DeviceHalfBuffer out;
  gpu_decode_bitstream(bytes, out);
  const codec::StreamInfo info = codec::inspect_stream(bytes, false);
  kv::KVCache cache = fp16_to_cache(info.shape, out.download());
  cache.info = info.info;
  return cache;
}

}  // namespace kvscope::kernels
