// SPDX-License-Identifier: Apache-2.0
// int8/int4 per-token quantization kernels (math: detail/quant_math.h).

#include <cuda_runtime.h>

#include "cuda_util.h"
#include "kvscope/kernels/detail/quant_math.h"
#include "kvscope/kernels/quantize.h"

namespace kvscope::kernels {
namespace detail {
void check_quant_args(const kv::CacheShape& s, int bits);
void check_quantized(const QuantizedCache& q);
}  // namespace detail

namespace {

constexpr int kBlock = 256;

struct RowGeometry {
  int kv_heads, tokens, head_dim, channels;
  int row_bytes;
};

// Element index in the [layer][kind][head][token][dim] layout of row (lk, t), channel c.
__device__ __forceinline__ std::size_t element_index(const RowGeometry& g, int lk, int t, int c) {
  const int head = c / g.head_dim, dim = c - head * g.head_dim;
  return ((static_cast<std::size_t>(lk) * g.kv_heads + head) * g.tokens + t) * g.head_dim + dim;
}

// One block per row: absmax by block reduction (max is order-independent, so
// the result equals the CPU's), then quantize and pack.
__global__ void quantize_rows(const float* __restrict__ in, RowGeometry g, int bits,
                              std::uint8_t* __restrict__ values, std::uint16_t* __restrict__ scales) {
  const std::size_t row = blockIdx.x;
  const int lk = static_cast<int>(row / g.tokens), t = static_cast<int>(row % g.tokens);
  const int qmax = bits == 8 ? detail::kInt8Max : detail::kInt4Max;
  float m = 0.0f;
  for (int c = threadIdx.x; c < g.channels; c += blockDim.x)
    m = detail::max_nan(m, detail::abs_value(in[element_index(g, lk, t, c)]));
  __shared__ float partial[kBlock / 32];
  for (int off = 16; off > 0; off >>= 1) m = detail::max_nan(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = m;
  __syncthreads();
  __shared__ std::uint16_t scale_bits;
  if (threadIdx.x == 0) {
    float r = 0.0f;
    for (int w = 0; w < kBlock / 32; ++w) r = detail::max_nan(r, partial[w]);
    scale_bits = detail::symmetric_scale(r, qmax);
    scales[row] = scale_bits;
  }
  __syncthreads();
  const float scale = detail::half_to_float(scale_bits);
  std::uint8_t* out = values + row * g.row_bytes;
  if (bits == 8) {
    for (int c = threadIdx.x; c < g.channels; c += blockDim.x) {
      out[c] = static_cast<std::uint8_t>(
          static_cast<std::int8_t>(detail::quantize_symmetric(in[element_index(g, lk, t, c)], scale, qmax)));
    }
  } else {
    for (int b = threadIdx.x; b < g.row_bytes; b += blockDim.x) {
      const int c = 2 * b;
      const int lo = detail::quantize_symmetric(in[element_index(g, lk, t, c)], scale, qmax);
      const int hi = c + 1 < g.channels
                         ? detail::quantize_symmetric(in[element_index(g, lk, t, c + 1)], scale, qmax)
                         : 0;
      out[b] = detail::pack_nibbles(lo, hi);
    }
  }
}

// One thread per output element, in output order (coalesced fp16 writes).
__global__ void dequantize_fp16(const std::uint8_t* __restrict__ values,
                                const std::uint16_t* __restrict__ scales, RowGeometry g, int bits,
                                std::size_t elements, std::uint16_t* __restrict__ out) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < elements;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int dim = static_cast<int>(i % g.head_dim);
    std::size_t rest = i / g.head_dim;
    const int t = static_cast<int>(rest % g.tokens);
    rest /= g.tokens;
    const int head = static_cast<int>(rest % g.kv_heads);
    const std::size_t lk = rest / g.kv_heads;
    const std::size_t row = lk * g.tokens + t;
    const int c = head * g.head_dim + dim;
    const std::uint8_t* in = values + row * g.row_bytes;
    const int v = bits == 8 ? static_cast<int>(static_cast<std::int8_t>(in[c]))
                            : detail::unpack_nibble(in[c >> 1], c & 1);
    out[i] = detail::float_to_half(detail::dequantize_symmetric(v, detail::half_to_float(scales[row])));
  }
}

RowGeometry geometry(const kv::CacheShape& s, int bits) {
  RowGeometry g{s.kv_heads, s.tokens, s.head_dim, s.channels(), 0};
  g.row_bytes = bits == 8 ? g.channels : (g.channels + 1) / 2;
  return g;
}

int grid_for(std::size_t n) {
  const std::size_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<int>(blocks < 65536 * 16 ? blocks : 65536 * 16);
}

}  // namespace

void gpu_quantize_device(const float* d_in, const kv::CacheShape& shape, int bits, std::uint8_t* d_values,
                         std::uint16_t* d_scales, void* stream) {
  detail::check_quant_args(shape, bits);
  const std::size_t rows = static_cast<std::size_t>(shape.layers) * 2 * shape.tokens;
  quantize_rows<<<static_cast<unsigned>(rows), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
      d_in, geometry(shape, bits), bits, d_values, d_scales);
  cuda::check(cudaGetLastError(), "quantize kernel launch");
}

void gpu_dequantize_device_fp16(const std::uint8_t* d_values, const std::uint16_t* d_scales,
                                const kv::CacheShape& shape, int bits, std::uint16_t* d_out, void* stream) {
  detail::check_quant_args(shape, bits);
  dequantize_fp16<<<grid_for(shape.elements()), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
      d_values, d_scales, geometry(shape, bits), bits, shape.elements(), d_out);
  cuda::check(cudaGetLastError(), "dequantize kernel launch");
}

QuantizedCache gpu_quantize(const kv::KVCache& cache, int bits) {
  detail::check_quant_args(cache.shape(), bits);
  cuda::require_device("gpu_quantize");
  QuantizedCache q;
  q.shape = cache.shape();
  q.bits = bits;
  q.values.resize(q.rows() * q.row_bytes());
  q.scales.resize(q.rows());
  cuda::DeviceArray<float> d_in(cache.data().size());
  cuda::DeviceArray<std::uint8_t> d_values(q.values.size());
  cuda::DeviceArray<std::uint16_t> d_scales(q.scales.size());
  d_in.upload(cache.data().data(), cache.data().size());
  gpu_quantize_device(d_in.get(), q.shape, bits, d_values.get(), d_scales.get());
  d_values.download(q.values.data(), q.values.size());
  d_scales.download(q.scales.data(), q.scales.size());
  cuda::check(cudaDeviceSynchronize(), "gpu_quantize");
  for (std::size_t r = 0; r < q.scales.size(); ++r) {
    if (q.scales[r] == detail::kInvalidScale) {
      throw Error(ErrorCode::InvalidArgument,
                  "gpu_quantize: NaN, infinite or too large values in row " + std::to_string(r));
    }
  }
  return q;
}

kv::KVCache gpu_dequantize(const QuantizedCache& q) {
  detail::check_quantized(q);
  cuda::require_device("gpu_dequantize");
  cuda::DeviceArray<std::uint8_t> d_values(q.values.size());
  cuda::DeviceArray<std::uint16_t> d_scales(q.scales.size());
  cuda::DeviceArray<std::uint16_t> d_out(q.shape.elements());
  d_values.upload(q.values.data(), q.values.size());
  d_scales.upload(q.scales.data(), q.scales.size());
  gpu_dequantize_device_fp16(d_values.get(), d_scales.get(), q.shape, q.bits, d_out.get());
  std::vector<std::uint16_t> halves(q.shape.elements());
  d_out.download(halves.data(), halves.size());
  cuda::check(cudaDeviceSynchronize(), "gpu_dequantize");
  kv::KVCache cache(q.shape);
  auto data = cache.data();
  for (std::size_t i = 0; i < halves.size(); ++i) data[i] = detail::half_to_float(halves[i]);
  return cache;
}

}  // namespace kvscope::kernels
