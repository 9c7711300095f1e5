// Chunk-by-chunk GPU decode overlapping host-to-device copies with decoding.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_util.h"
#include "gpu_kernels.cuh"
#include "kvscope/kernels/gpu_codec.h"

namespace kvscope::kernels {

struct StreamingDecoder::Impl {
  // One lane = one CUDA stream with its own pinned staging and device buffers;
  // round-robin over lanes lets chunk i+1's copy run while chunk i decodes.
  struct Lane {
    cudaStream_t stream{};
    cuda::PinnedArray<std::uint8_t> staging;
    cuda::PinnedArray<std::uint64_t> staging_offsets;
    cuda::DeviceArray<std::uint8_t> bytes;
    cuda::DeviceArray<std::uint64_t> offsets;
  };

  StreamTable header;  // streams and payload left empty
  gpu::Geometry geometry{};
  cuda::DeviceArray<ChannelModel> models;
  cuda::DeviceArray<std::uint16_t> cdfs;
  cuda::DeviceArray<std::uint32_t> flags;  // one per chunk
  DeviceHalfBuffer output;
  std::vector<Lane> lanes;
  std::vector<bool> pushed;
  std::size_t next_lane = 0;
  bool finished = false;

  ~Impl() {
    for (Lane& lane : lanes) {
      if (lane.stream) {
        cudaStreamSynchronize(lane.stream);
        cudaStreamDestroy(lane.stream);
      }
    }
  }
};

StreamingDecoder::StreamingDecoder(const StreamTable& header, int lanes) : impl_(std::make_unique<Impl>()) {
  validate_header(header);
  cuda::require_device("StreamingDecoder");
  if (lanes < 1 || lanes > 16)
    throw Error(ErrorCode::InvalidArgument, "StreamingDecoder: lanes must be in [1, 16]");
  Impl& s = *impl_;
  s.header.shape = header.shape;
  s.header.chunk_tokens = header.chunk_tokens;
  s.header.group_size = header.group_size;
  s.header.models = header.models;
  s.geometry = gpu::geometry_of(s.header);
  s.models = cuda::DeviceArray<ChannelModel>(header.models.size());
  s.cdfs = cuda::DeviceArray<std::uint16_t>(header.cdfs.size());
  s.models.upload(header.models.data(), header.models.size());
  s.cdfs.upload(header.cdfs.data(), header.cdfs.size());
  s.flags = cuda::DeviceArray<std::uint32_t>(static_cast<std::size_t>(s.header.chunks()));
  s.flags.zero();
  s.output = DeviceHalfBuffer(header.shape.elements());
  s.pushed.assign(static_cast<std::size_t>(s.header.chunks()), false);
  s.lanes.resize(static_cast<std::size_t>(lanes));
  for (auto& lane : s.lanes)
    cuda::check(cudaStreamCreateWithFlags(&lane.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  // Tables and flags were written on the legacy stream; lanes must see them.
  cuda::check(cudaDeviceSynchronize(), "StreamingDecoder setup");
}

StreamingDecoder::~StreamingDecoder() = default;

void StreamingDecoder::push_chunk(int chunk, std::span<const StreamDesc> streams,
                                  std::span<const std::uint8_t> bytes, std::uint32_t crc) {
  Impl& s = *impl_;
  if (s.finished) throw Error(ErrorCode::InvalidArgument, "StreamingDecoder: push after finish");
  validate_chunk(s.header, chunk, streams, bytes, crc);
  if (s.pushed[static_cast<std::size_t>(chunk)]) {
    throw Error(ErrorCode::Format, "StreamingDecoder: chunk " + std::to_string(chunk) + " pushed twice");
  }
  s.pushed[static_cast<std::size_t>(chunk)] = true;

  Impl::Lane& lane = s.lanes[s.next_lane];
  s.next_lane = (s.next_lane + 1) % s.lanes.size();
  // The lane's previous chunk must be done with its buffers before reuse.
  cuda::check(cudaStreamSynchronize(lane.stream), "StreamingDecoder lane wait");
  const std::size_t n = streams.size();
  if (lane.staging.size() < bytes.size()) {
    lane.staging = cuda::PinnedArray<std::uint8_t>(bytes.size() + bytes.size() / 4);
    lane.bytes = cuda::DeviceArray<std::uint8_t>(lane.staging.size());
  }
  if (lane.staging_offsets.size() < n + 1) {
    lane.staging_offsets = cuda::PinnedArray<std::uint64_t>(n + 1);
    lane.offsets = cuda::DeviceArray<std::uint64_t>(n + 1);
  }
  if (!bytes.empty()) std::memcpy(lane.staging.get(), bytes.data(), bytes.size());
  for (std::size_t j = 0; j < n; ++j) lane.staging_offsets.get()[j] = streams[j].byte_offset;
  lane.staging_offsets.get()[n] = bytes.size();
  lane.bytes.upload(lane.staging.get(), bytes.size(), lane.stream);
  lane.offsets.upload(lane.staging_offsets.get(), n + 1, lane.stream);
  gpu::launch_decode_chunks(lane.bytes.get(), lane.offsets.get(), chunk, 1, s.geometry, s.models.get(),
                            s.cdfs.get(), s.output.data(), s.flags.get() + chunk, lane.stream);
}

void StreamingDecoder::finish() {
  Impl& s = *impl_;
  for (auto& lane : s.lanes) cuda::check(cudaStreamSynchronize(lane.stream), "StreamingDecoder finish");
  s.finished = true;
  for (std::size_t c = 0; c < s.pushed.size(); ++c) {
    if (!s.pushed[c])
      throw Error(ErrorCode::Format, "StreamingDecoder: chunk " + std::to_string(c) + " never arrived");
  }
  std::vector<std::uint32_t> flags(s.pushed.size());
  s.flags.download(flags.data(), flags.size());
  cuda::check(cudaDeviceSynchronize(), "StreamingDecoder flags");
  for (std::size_t c = 0; c < flags.size(); ++c) {
    if (flags[c] != 0) {
      throw Error(ErrorCode::Format, "gpu streaming decode: chunk " + std::to_string(c) +
                                         " has a corrupt entropy-coded stream (flags " +
                                         std::to_string(flags[c]) + ")");
    }
  }
}

const DeviceHalfBuffer& StreamingDecoder::output() const {
  return impl_->output;
}

kv::KVCache StreamingDecoder::download() const {
  return fp16_to_cache(impl_->header.shape, impl_->output.download());
}

}  // namespace kvscope::kernels
