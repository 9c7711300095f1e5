// SPDX-License-Identifier: Apache-2.0
#pragma once

// Decoding core/codec bitstreams (docs/bitstream.md; codecs cachegen with
// tables shipped in the stream, int8, int4, fp16) on the GPU, straight into
// an fp16 cache in device memory, and the automatic choice between the GPU
// and the CPU path. Plain C++ header (includable without nvcc).
//
// Every structural check the CPU decoder makes (header and section CRCs,
// section order, sizes, steps, tables, lengths, empty models) is made on the
// host before any byte reaches the GPU; what only decoding reveals (a delta
// that leaves [-M, M]) is flagged by the kernel. Either way the call throws
// kvscope::Error (Format | Checksum | Unsupported), never crashes, and never
// writes outside the output.
//
// Values: the GPU writes fp16, the CPU decoder floats; GPU output ==
// round_to_half(codec::decode(bytes)) bit for bit.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/codec.h"
#include "kvscope/kernels/device_buffer.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels {

/// Whether the GPU path handles a stream or a configuration, and if not, why.
struct GpuSupport {
  bool supported = false;
  /// "" when supported; otherwise one sentence a front end can show, e.g.
  /// "cachegen parameter 'sinks' has no GPU kernel (the CPU handles it)".
  std::string reason;
  explicit operator bool() const { return supported; }
};

/// Whether the GPU decoder implements this stream's codec, layout version,
/// parameters and table mode (whether a device is present is a separate
/// question: cuda_device_available()). Never throws: a header that does not
/// parse is unsupported, with the parser's message as the reason, and the
/// CPU decoder reports the error. Needs no device.
GpuSupport gpu_decode_support(std::span<const std::uint8_t> bitstream);

/// Whether gpu_encode_cachegen implements `config` for caches of `shape`
/// (codec cachegen with tables shipped, parameters it knows). Never throws;
/// invalid parameters are unsupported with the reason. Needs no device.
GpuSupport gpu_encode_support(const kv::CacheShape& shape, const codec::CodecConfig& config);

/// Decodes into `out` (resized to the cache's element count), layout
/// [layer][kind][head][token][dim]. Error(Unsupported) without a device or
/// for an unsupported codec.
void gpu_decode_bitstream(std::span<const std::uint8_t> bitstream, DeviceHalfBuffer& out);

/// Same, copied to a host cache (values are fp16-exact). Info and token ids
/// are taken from the header as codec::decode does.
kv::KVCache gpu_decode_bitstream(std::span<const std::uint8_t> bitstream);

/// Runs the GPU decoder's host planning and the kernels' per-stream code on
/// the CPU: the same fp16 result gpu_decode_bitstream gives, with no GPU.
/// For tests (CI checks the kernel logic against codec::decode this way).
std::vector<std::uint16_t> emulate_gpu_decode_fp16(std::span<const std::uint8_t> bitstream);

/// The section payloads codec::encode(cache, config) writes for codec
/// "cachegen" with tables shipped in the stream, in container order (per
/// layer and kind: the Table section, then its chunks), computed by the
/// encoder's per-channel and per-stream logic (detail/cachegen_encode.h) on
/// the CPU: what the GPU encoder computes, byte for byte. The container
/// header is core/codec's (see kernels/README.md). Error(InvalidArgument)
/// for bad parameters or NaN/infinite values, Error(Unsupported) for what
/// gpu_encode_support() refuses (other codecs, a calibration file,
/// parameters the GPU does not implement).
std::vector<std::vector<std::uint8_t>> emulate_gpu_encode_cachegen_sections(const kv::KVCache& cache,
                                                                            const codec::CodecConfig& config);

/// The same payloads computed on the GPU (kernel timings in
/// last_gpu_timings()). Error(Unsupported) without a device.
std::vector<std::vector<std::uint8_t>> gpu_encode_cachegen_sections(const kv::KVCache& cache,
                                                                    const codec::CodecConfig& config);

/// A complete cachegen stream (tables shipped) from the sections above,
/// framed by codec::assemble_stream: equal to codec::encode(cache,
/// config).bytes. The emulated one runs on the CPU; the GPU one throws
/// Error(Unsupported) without a device. Both throw Error(Unsupported) with
/// gpu_encode_support()'s reason for a configuration they do not implement.
std::vector<std::uint8_t> emulate_gpu_encode_cachegen(const kv::KVCache& cache,
                                                      const codec::CodecConfig& config);
std::vector<std::uint8_t> gpu_encode_cachegen(const kv::KVCache& cache, const codec::CodecConfig& config);

/// Decode on the best backend: the GPU when a device is present and
/// gpu_decode_support() says yes, the CPU (codec::decode) otherwise, or when
/// the GPU fails for a reason of its own (Error(Internal), e.g. out of device
/// memory). A corrupt stream is the same Error(Format | Checksum) either way.
struct AutoDecodeResult {
  kv::KVCache cache;
  std::string backend;          ///< "cuda:<device>" or "cpu"
  std::string fallback_reason;  ///< why the CPU decoded it ("" on the GPU), e.g. "no CUDA device (...)"
};
AutoDecodeResult decode_auto(std::span<const std::uint8_t> bitstream,
                             const codec::DecodeOptions& options = {});

/// Decodes sections as they arrive. Construct from the stream's directory
/// (codec::inspect_stream of the header, e.g. sent ahead) and codec header;
/// push every section (its 24-byte header and payload, as in the container)
/// in container order; each push checks the section's CRC, plans it on the
/// host and stages it in pinned memory; once `batch_bytes` are staged, the
/// batch's host-to-device copy and decode kernel are queued on one of
/// `lanes` CUDA streams, so copies overlap the decoding of earlier batches.
class GpuSectionDecoder {
 public:
  GpuSectionDecoder(const codec::StreamInfo& info, std::span<const std::uint8_t> codec_header, int lanes = 3,
                    std::size_t batch_bytes = 32u << 20);
  ~GpuSectionDecoder();
  GpuSectionDecoder(const GpuSectionDecoder&) = delete;
  GpuSectionDecoder& operator=(const GpuSectionDecoder&) = delete;

  /// Section `index` of info.sections. Error(Format | Checksum) on a bad
  /// section, a wrong order or a repeated index.
  void push_section(std::size_t index, std::span<const std::uint8_t> section);
  /// Decodes what is staged, waits for everything; Error(Format) when a
  /// section is missing or the device flagged a corrupt stream.
  void finish();
  /// Time the decode kernels took, summed over batches (valid after finish()).
  double kernel_ms() const;
  const DeviceHalfBuffer& output() const;
  DeviceHalfBuffer take_output();

 private:
  friend void gpu_decode_bitstream(std::span<const std::uint8_t> bitstream, DeviceHalfBuffer& out);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope::kernels
