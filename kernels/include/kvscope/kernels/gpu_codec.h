#pragma once

// The entropy codec on the GPU (format: stream_table.h): decode straight into
// an fp16 cache in device memory, encode producing the same bytes as the CPU
// reference, and a streaming decoder that overlaps the copy of arriving
// chunks with the decoding of earlier ones. Plain C++ header.
//
// Errors: Error(Unsupported) when no CUDA device is available; Error(Format)
// for a table that fails validate() or stream bytes the decoder flags as
// corrupt (the output is then unspecified but all writes stay in bounds);
// Error(Internal) for a CUDA failure.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvscope/kernels/stream_table.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels {

/// Owns a device allocation of fp16 values in the KVCache layout.
class DeviceHalfBuffer {
 public:
  DeviceHalfBuffer() = default;
  explicit DeviceHalfBuffer(std::size_t elements);
  ~DeviceHalfBuffer();
  DeviceHalfBuffer(DeviceHalfBuffer&& other) noexcept;
  DeviceHalfBuffer& operator=(DeviceHalfBuffer&& other) noexcept;
  DeviceHalfBuffer(const DeviceHalfBuffer&) = delete;
  DeviceHalfBuffer& operator=(const DeviceHalfBuffer&) = delete;

  std::uint16_t* data() { return data_; }
  const std::uint16_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  /// Copies to the host (fp16 bits).
  std::vector<std::uint16_t> download() const;

 private:
  std::uint16_t* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Decodes the whole table into `out` (resized to shape.elements() if needed).
void gpu_decode(const StreamTable& table, DeviceHalfBuffer& out);
/// Same, copied back into a float KVCache.
kv::KVCache gpu_decode(const StreamTable& table);

/// Encodes on the GPU; the result equals cpu_encode(cache, params) byte for byte.
StreamTable gpu_encode(const kv::KVCache& cache, const EncodeParams& params);

/// Timings of the last GPU call, for benchmarks (kernel time only, measured
/// with CUDA events; 0 when not measured).
struct GpuTimings {
  double kernel_ms = 0;
  double total_ms = 0;  ///< including host<->device copies
};
GpuTimings last_gpu_timings();

/// Decodes chunks as they arrive. Construct with the table's header part
/// (shape, sizes, models, CDFs: they arrive first in a stream); then push
/// each chunk's streams and bytes in any order. Each push copies the bytes
/// into pinned staging memory and enqueues an async host-to-device copy plus
/// the decode kernel on one of `lanes` CUDA streams, so the copy of chunk
/// i+1 overlaps the decode of chunk i. finish() waits and checks the
/// device-side error flags.
class StreamingDecoder {
 public:
  /// `header`: a StreamTable whose streams/payload may be empty; models and
  /// CDFs are validated here. Throws as gpu_decode.
  explicit StreamingDecoder(const StreamTable& header, int lanes = 3);
  ~StreamingDecoder();
  StreamingDecoder(const StreamingDecoder&) = delete;
  StreamingDecoder& operator=(const StreamingDecoder&) = delete;

  /// Chunk `chunk`'s descriptors (byte offsets relative to `bytes`) and
  /// bytes and the chunk's CRC-32C. Validates them (validate_chunk);
  /// Error(Format | Checksum) otherwise or when the chunk was already pushed. Returns once the bytes are
  /// staged.
  void push_chunk(int chunk, std::span<const StreamDesc> streams, std::span<const std::uint8_t> bytes,
                  std::uint32_t crc);
  /// Waits for all pushed chunks; Error(Format) if any stream was corrupt or
  /// a chunk is missing.
  void finish();
  /// The decoded cache in device memory (valid after finish()).
  const DeviceHalfBuffer& output() const;
  kv::KVCache download() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope::kernels
