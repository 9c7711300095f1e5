// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <string>

#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
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
  for (const std::uint16_t sc : q.scales) {
    const float f = half_to_float(sc);
    if (!(f >= 0.0f) || f > 65504.0f) throw Error(ErrorCode::Format, "quantized cache: invalid scale");
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
        absmax = detail::max_nan(absmax, detail::abs_value(cache.channel_value(layer, kind, t, c)));
      }
      q.scales[r] = detail::symmetric_scale(absmax, qmax);
      if (q.scales[r] == detail::kInvalidScale) {
        throw Error(ErrorCode::InvalidArgument, "quantize: NaN, infinite or too large values in layer " +
                                                    std::to_string(layer) + " token " + std::to_string(t));
      }
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

std::vector<std::vector<std::uint8_t>> codec_section_payloads(const QuantizedCache& q, int chunk_tokens) {
  detail::check_quantized(q);
  if (chunk_tokens < 1 || chunk_tokens > 65536) {
    throw Error(ErrorCode::InvalidArgument, "codec_section_payloads: chunk_tokens must be in [1, 65536]");
  }
  const kv::CacheShape& s = q.shape;
  const int chunks = (s.tokens + chunk_tokens - 1) / chunk_tokens;
  const int H = s.kv_heads, D = s.head_dim;
  std::vector<std::vector<std::uint8_t>> out;
  out.reserve(static_cast<std::size_t>(s.layers) * 2 * chunks);
  for (int lk = 0; lk < s.layers * 2; ++lk) {
    for (int c = 0; c < chunks; ++c) {
      const int t0 = c * chunk_tokens, n = std::min(chunk_tokens, s.tokens - t0);
      const std::size_t values = static_cast<std::size_t>(H) * n * D;
      std::vector<std::uint8_t> p(static_cast<std::size_t>(n) * 2 + (q.bits == 8 ? values : (values + 1) / 2),
                                  0);
      for (int t = 0; t < n; ++t) {
        const std::uint16_t sc = q.scales[static_cast<std::size_t>(lk) * s.tokens + t0 + t];
        p[2 * t] = static_cast<std::uint8_t>(sc & 0xff);
        p[2 * t + 1] = static_cast<std::uint8_t>(sc >> 8);
      }
      std::uint8_t* sym = p.data() + static_cast<std::size_t>(n) * 2;
      std::size_t k = 0;
      for (int h = 0; h < H; ++h) {
        for (int t = 0; t < n; ++t) {
          const std::uint8_t* row =
              q.values.data() + (static_cast<std::size_t>(lk) * s.tokens + t0 + t) * q.row_bytes();
          for (int d = 0; d < D; ++d, ++k) {
            const int ch = h * D + d;
            if (q.bits == 8) {
              sym[k] = row[ch];
            } else {
              const int v = detail::unpack_nibble(row[ch / 2], ch & 1);
              sym[k >> 1] |= static_cast<std::uint8_t>((v + 8) << ((k & 1) * 4));
            }
          }
        }
      }
      out.push_back(std::move(p));
    }
  }
  return out;
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
