#pragma once

// The int8 and int4 baselines (per-token symmetric uniform quantization, one
// fp16 scale per (layer, kind, token) row of kv_heads*head_dim values; math
// in detail/quant_math.h) on the GPU, plus the CPU reference they must match
// bit for bit. Plain C++ header.

#include <cstdint>
#include <vector>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels {

/// A quantized cache. Rows are (layer, kind, token) in that order; a row's
/// values are in channel order (channel = head * head_dim + dim).
/// int8: one int8 per value. int4: two's-complement nibbles, value 2i in
/// the low nibble of byte i, each row padded to whole bytes.
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
/// the cache is non-empty.
QuantizedCache cpu_quantize(const kv::KVCache& cache, int bits);
/// Throws Error(Format) when sizes do not match the shape.
kv::KVCache cpu_dequantize(const QuantizedCache& q);

/// GPU versions; throw Error(Unsupported) without a device, Error(Internal)
/// on a CUDA failure, and the same argument errors as the CPU versions.
QuantizedCache gpu_quantize(const kv::KVCache& cache, int bits);
kv::KVCache gpu_dequantize(const QuantizedCache& q);

/// Device-pointer versions for callers whose cache already lives on the GPU.
/// `stream` is a cudaStream_t (nullptr = default stream); asynchronous.
/// d_in: shape.elements() floats in the KVCache layout; d_values/d_scales as
/// in QuantizedCache. d_out: fp16 bits in the KVCache layout.
void gpu_quantize_device(const float* d_in, const kv::CacheShape& shape, int bits, std::uint8_t* d_values,
                         std::uint16_t* d_scales, void* stream = nullptr);
void gpu_dequantize_device_fp16(const std::uint8_t* d_values, const std::uint16_t* d_scales,
                                const kv::CacheShape& shape, int bits, std::uint16_t* d_out,
                                void* stream = nullptr);

}  // namespace kvscope::kernels
