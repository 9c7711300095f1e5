#include <string>

#include "kvscope/common/error.h"
#include "kvscope/kernels/detail/quant_math.h"
#include "kvscope/kernels/quantize.h"

namespace kvscope::kernels {

namespace detail {
void check_quant_args(const kv::CacheShape& s, int bits) {
  if (bits != 8 && bits != 4) {
    throw Error(ErrorCode::InvalidArgument, "quantize: bits must be 8 or 4, got " + std::to_string(bits));
  }
  if (s.layers <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 || s.tokens <= 0) {
    throw Error(ErrorCode::InvalidArgument, "quantize: empty cache");
  }
}
void check_quantized(const QuantizedCache& q) {
  check_quant_args(q.shape, q.bits);
  if (q.values.size() != q.rows() * q.row_bytes() || q.scales.size() != q.rows()) {
    throw Error(ErrorCode::Format, "quantized cache: value or scale count does not match the shape");
  }
}
}  // namespace detail

QuantizedCache cpu_quantize(const kv::KVCache& cache, int bits) {
  const kv::CacheShape& s = cache.shape();
  detail::check_quant_args(s, bits);
  QuantizedCache q;
  q.shape = s;
  q.bits = bits;
  q.values.assign(q.rows() * q.row_bytes(), 0);
  q.scales.assign(q.rows(), 0);
  const int qmax = bits == 8 ? detail::kInt8Max : detail::kInt4Max;
  const int channels = s.channels();
  std::vector<int> row(channels);
  for (int lk = 0; lk < s.layers * 2; ++lk) {
    const auto layer = lk / 2;
    const auto kind = static_cast<kv::Kind>(lk % 2);
    for (int t = 0; t < s.tokens; ++t) {
      const std::size_t r = static_cast<std::size_t>(lk) * s.tokens + t;
      float absmax = 0;
      for (int c = 0; c < channels; ++c) {
        const float a = detail::abs_or_zero(cache.channel_value(layer, kind, t, c));
        absmax = a > absmax ? a : absmax;
      }
      q.scales[r] = detail::symmetric_scale(absmax, qmax);
      const float scale = detail::half_to_float(q.scales[r]);
      for (int c = 0; c < channels; ++c) {
        row[c] = detail::quantize_symmetric(cache.channel_value(layer, kind, t, c), scale, qmax);
      }
      std::uint8_t* out = q.values.data() + r * q.row_bytes();
      if (bits == 8) {
        for (int c = 0; c < channels; ++c)
          out[c] = static_cast<std::uint8_t>(static_cast<std::int8_t>(row[c]));
      } else {
        for (int c = 0; c < channels; c += 2) {
          out[c / 2] = detail::pack_nibbles(row[c], c + 1 < channels ? row[c + 1] : 0);
        }
      }
    }
  }
  return q;
}

kv::KVCache cpu_dequantize(const QuantizedCache& q) {
  detail::check_quantized(q);
  const kv::CacheShape& s = q.shape;
  kv::KVCache cache(s);
  const int channels = s.channels();
  for (int lk = 0; lk < s.layers * 2; ++lk) {
    for (int t = 0; t < s.tokens; ++t) {
      const std::size_t r = static_cast<std::size_t>(lk) * s.tokens + t;
      const float scale = detail::half_to_float(q.scales[r]);
      const std::uint8_t* in = q.values.data() + r * q.row_bytes();
      for (int c = 0; c < channels; ++c) {
        const int v = q.bits == 8 ? static_cast<int>(static_cast<std::int8_t>(in[c]))
                                  : detail::unpack_nibble(in[c / 2], c & 1);
        // Stored as fp16, exactly as the GPU path writes it.
        cache.channel_value(lk / 2, static_cast<kv::Kind>(lk % 2), t, c) =
            detail::half_to_float(detail::float_to_half(detail::dequantize_symmetric(v, scale)));
      }
    }
  }
  return cache;
}

}  // namespace kvscope::kernels
