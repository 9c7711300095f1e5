// SPDX-License-Identifier: Apache-2.0
#pragma once

// The int8 and int4 baselines (per-token symmetric uniform quantization, one
// fp16 scale per (layer, kind, token) row of kv_heads*head_dim values; math
// in detail/quant_math.h, identical to core/codec's int8/int4 codecs) on the
// GPU, plus the CPU reference they must match bit for bit, and the
// conversion to the codec's chunk-section payloads (byte-identical to what
// codec::encode writes for "int8"/"int4"). Plain C++ header.

#include <cstdint>
#include <vector>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels {

/// A quantized cache. Rows are (layer, kind, token) in that order; a row's
/// values are in channel order (channel = head * head_dim + dim).
/// int8: one int8 per value. int4: q + 8 in nibbles, value 2i in the low
/// nibble of byte i, each row padded to whole bytes.
struct QuantizedCache {
  kv::CacheShape shape;
  int bits = 8;                       ///< 8 or 4
  std::vector<std::uint8_t> values;   ///< rows * row_bytes()
  std::vector<std::uint16_t> scales;  ///< fp16 bits, one per row

  std::size_t rows() const { return static_cast<std::size_t>(shape.layers) * 2 * shape.tokens; }
  std::size_t row_bytes() const {
    return bits == 8 ? static_cast<std::size_t>(shape.channels())
                     : (static_cast<std::size_t>(shape.channels()) + 1) / 2;
  }
};

/// CPU reference. Throws Error(InvalidArgument) unless bits is 8 or 4 and
/// the cache is non-empty, or when a value is NaN/infinite or too large for
/// an fp16 scale (as the codec does).
QuantizedCache cpu_quantize(const kv::KVCache& cache, int bits);
/// Throws Error(Format) when sizes do not match the shape.
kv::KVCache cpu_dequantize(const QuantizedCache& q);

/// GPU versions; throw Error(Unsupported) without a device, Error(Internal)
/// on a CUDA failure, and the same argument errors as the CPU versions.
QuantizedCache gpu_quantize(const kv::KVCache& cache, int bits);
kv::KVCache gpu_dequantize(const QuantizedCache& q);

/// The chunk-section payloads codec::encode writes for this quantized cache
/// with codec "int8"/"int4" and `chunk_tokens`, in section order (layer,
/// kind, chunk): token_count fp16 scales, then the symbols in
/// [head][token][dim] order. Error(InvalidArgument) on a bad chunk size.
std::vector<std::vector<std::uint8_t>> codec_section_payloads(const QuantizedCache& q, int chunk_tokens);

/// Device-pointer versions for callers whose cache already lives on the GPU.
/// `stream` is a cudaStream_t (nullptr = default stream); asynchronous.
/// d_in: shape.elements() floats in the KVCache layout; d_values/d_scales as
/// in QuantizedCache (an invalid row is marked by scale 0xffff). d_out: fp16
/// bits in the KVCache layout.
void gpu_quantize_device(const float* d_in, const kv::CacheShape& shape, int bits, std::uint8_t* d_values,
                         std::uint16_t* d_scales, void* stream = nullptr);
void gpu_dequantize_device_fp16(const std::uint8_t* d_values, const std::uint16_t* d_scales,
                                const kv::CacheShape& shape, int bits, std::uint16_t* d_out,
                                void* stream = nullptr);

}  // namespace kvscope::kernels
