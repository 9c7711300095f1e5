#include "kvscope/kernels/stream_table.h"

#include <cmath>
#include <string>

#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/thread_pool.h"
#include "kvscope/kernels/detail/stream_codec.h"

namespace kvscope::kernels {
namespace {

void require_format(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::Format, "stream table: " + what);
}

void check_shape(const kv::CacheShape& s, int chunk_tokens) {
  if (s.layers <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 || s.tokens < 0 || chunk_tokens <= 0) {
    throw Error(ErrorCode::InvalidArgument, "stream table: shape and chunk size must be positive");
  }
  // Element offsets are 64-bit; tokens per stream and strides must fit 32 bits.
  if (static_cast<std::uint64_t>(s.layers) * 2 * s.channels() > (1ull << 31)) {
    throw Error(ErrorCode::InvalidArgument, "stream table: too many channels");
  }
}

}  // namespace

std::span<const std::uint8_t> StreamTable::chunk_payload(int c) const {
  const auto ss = chunk_streams(c);
  if (ss.empty()) return {};
  const std::uint64_t begin = ss.front().byte_offset;
  const std::uint64_t end = ss.back().byte_offset + ss.back().byte_length;
  return std::span<const std::uint8_t>(payload).subspan(begin, end - begin);
}

std::span<const StreamDesc> StreamTable::chunk_streams(int c) const {
  const std::size_t per = streams_per_chunk();
  return std::span<const StreamDesc>(streams).subspan(static_cast<std::size_t>(c) * per, per);
}

std::vector<StreamDesc> canonical_streams(const kv::CacheShape& shape, int chunk_tokens) {
  check_shape(shape, chunk_tokens);
  const int chunks = (shape.tokens + chunk_tokens - 1) / chunk_tokens;
  const int channels = shape.channels();
  std::vector<StreamDesc> out;
  out.reserve(static_cast<std::size_t>(chunks) * shape.layers * 2 * channels);
  for (int c = 0; c < chunks; ++c) {
    const int t0 = c * chunk_tokens;
    const int n = std::min(chunk_tokens, shape.tokens - t0);
    for (int l = 0; l < shape.layers; ++l) {
      for (int k = 0; k < 2; ++k) {
        for (int ch = 0; ch < channels; ++ch) {
          StreamDesc d;
          d.model = static_cast<std::uint32_t>((l * 2 + k) * channels + ch);
          const int head = ch / shape.head_dim, dim = ch % shape.head_dim;
          d.out_offset = ((static_cast<std::uint64_t>(l) * 2 + k) * shape.kv_heads + head) *
                             static_cast<std::uint64_t>(shape.tokens) * shape.head_dim +
                         static_cast<std::uint64_t>(t0) * shape.head_dim + dim;
          d.tokens = static_cast<std::uint32_t>(n);
          d.out_stride = static_cast<std::uint32_t>(shape.head_dim);
          out.push_back(d);
        }
      }
    }
  }
  return out;
}

void validate_header(const StreamTable& t) {
  const auto& s = t.shape;
  require_format(s.layers > 0 && s.kv_heads > 0 && s.head_dim > 0 && s.tokens > 0, "empty or negative shape");
  require_format(t.chunk_tokens > 0 && t.group_size > 0, "chunk and group sizes must be positive");
  require_format(static_cast<std::uint64_t>(s.layers) * 2 * s.channels() <= (1ull << 31),
                 "too many channels");
  const std::size_t n_models = static_cast<std::size_t>(s.layers) * 2 * s.channels();
  require_format(t.models.size() == n_models, "expected " + std::to_string(n_models) +
                                                  " channel models, got " + std::to_string(t.models.size()));
  for (std::size_t i = 0; i < t.models.size(); ++i) {
    const ChannelModel& m = t.models[i];
    const std::string where = "model " + std::to_string(i) + ": ";
    require_format(std::isfinite(m.anchor_step) && m.anchor_step >= 0 && std::isfinite(m.delta_step) &&
                       m.delta_step >= 0,
                   where + "step not finite and >= 0");
    const std::pair<std::uint32_t, int> cdfs[2] = {{m.anchor_cdf, m.anchor_symbols},
                                                   {m.delta_cdf, m.delta_symbols}};
    for (const auto& [begin, n] : cdfs) {
      require_format(n >= 1 && n <= kMaxSymbols, where + "symbol count out of range");
      require_format(static_cast<std::uint64_t>(begin) + n <= t.cdfs.size(), where + "CDF outside the table");
      require_format(t.cdfs[begin] == 0, where + "CDF does not start at 0");
      for (int j = 1; j < n; ++j) {
        require_format(t.cdfs[begin + j] > t.cdfs[begin + j - 1], where + "CDF not strictly increasing");
      }
    }
  }
}

void validate_chunk(const StreamTable& t, int chunk, std::span<const StreamDesc> streams,
                    std::span<const std::uint8_t> bytes, std::uint32_t crc) {
  const std::size_t chunk_bytes = bytes.size();
  require_format(chunk >= 0 && chunk < t.chunks(), "chunk " + std::to_string(chunk) + " out of range");
  const std::size_t per = t.streams_per_chunk();
  require_format(streams.size() == per, "chunk " + std::to_string(chunk) + ": expected " +
                                            std::to_string(per) + " streams, got " +
                                            std::to_string(streams.size()));
  const int channels = t.shape.channels();
  const int t0 = chunk * t.chunk_tokens;
  const auto n = static_cast<std::uint32_t>(std::min(t.chunk_tokens, t.shape.tokens - t0));
  std::uint64_t next = 0;
  for (std::size_t j = 0; j < per; ++j) {
    const StreamDesc& d = streams[j];
    const std::size_t lk = j / channels;
    const int ch = static_cast<int>(j % channels);
    const int head = ch / t.shape.head_dim, dim = ch % t.shape.head_dim;
    const std::uint64_t out = (static_cast<std::uint64_t>(lk) * t.shape.kv_heads + head) *
                                  static_cast<std::uint64_t>(t.shape.tokens) * t.shape.head_dim +
                              static_cast<std::uint64_t>(t0) * t.shape.head_dim + dim;
    const std::string where = "chunk " + std::to_string(chunk) + " stream " + std::to_string(j) + ": ";
    require_format(d.model == j && d.out_offset == out && d.tokens == n &&
                       d.out_stride == static_cast<std::uint32_t>(t.shape.head_dim),
                   where + "descriptor does not match the cache layout");
    require_format(d.byte_offset == next, where + "bytes not contiguous");
    require_format(d.byte_length >= 4, where + "shorter than the coder's 4-byte start");
    next = d.byte_offset + d.byte_length;
    require_format(next <= chunk_bytes, where + "bytes run past the chunk");
  }
  require_format(next == chunk_bytes, "chunk " + std::to_string(chunk) + " has trailing bytes");
  if (crc32c(bytes) != crc) {
    throw Error(ErrorCode::Checksum, "stream table: chunk " + std::to_string(chunk) + " fails its CRC-32C");
  }
}

void validate(const StreamTable& t) {
  validate_header(t);
  const auto& s = t.shape;
  const auto expected = canonical_streams(s, t.chunk_tokens);
  require_format(
      t.streams.size() == expected.size(),
      "expected " + std::to_string(expected.size()) + " streams, got " + std::to_string(t.streams.size()));
  std::uint64_t next = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const StreamDesc& d = t.streams[i];
    const StreamDesc& e = expected[i];
    const std::string where = "stream " + std::to_string(i) + ": ";
    require_format(d.model == e.model && d.out_offset == e.out_offset && d.tokens == e.tokens &&
                       d.out_stride == e.out_stride,
                   where + "descriptor does not match the cache layout");
    require_format(d.byte_offset == next, where + "bytes not contiguous");
    require_format(d.byte_length >= 4, where + "shorter than the coder's 4-byte start");
    next = d.byte_offset + d.byte_length;
    require_format(next <= t.payload.size(), where + "bytes run past the payload");
  }
  require_format(next == t.payload.size(), "payload has trailing bytes");
  require_format(t.chunk_crc.size() == static_cast<std::size_t>(t.chunks()), "one CRC per chunk expected");
  for (int c = 0; c < t.chunks(); ++c) {
    if (crc32c(t.chunk_payload(c)) != t.chunk_crc[static_cast<std::size_t>(c)]) {
      throw Error(ErrorCode::Checksum, "stream table: chunk " + std::to_string(c) + " fails its CRC-32C");
    }
  }
}

void seal(StreamTable& t) {
  t.chunk_crc.resize(static_cast<std::size_t>(t.chunks()));
  for (int c = 0; c < t.chunks(); ++c) t.chunk_crc[static_cast<std::size_t>(c)] = crc32c(t.chunk_payload(c));
}

void validate(const EncodeParams& p, const kv::CacheShape& shape) {
  auto need = [](bool ok, const std::string& name, const std::string& range) {
    if (!ok) throw Error(ErrorCode::InvalidArgument, "gpu encode: parameter " + name + " must be " + range);
  };
  need(p.chunk_tokens >= 1 && p.chunk_tokens <= 65536, "chunk_tokens", "in [1, 65536]");
  need(p.group_size >= 1 && p.group_size <= 65536, "group_size", "in [1, 65536]");
  need(p.anchor_bins >= 3 && p.anchor_bins <= kMaxSymbols, "anchor_bins", "in [3, 4096]");
  for (int i = 0; i < 3; ++i) {
    need(p.key_bins[i] >= 3 && p.key_bins[i] <= kMaxSymbols, "key_bins", "in [3, 4096]");
    need(p.value_bins[i] >= 3 && p.value_bins[i] <= kMaxSymbols, "value_bins", "in [3, 4096]");
  }
  if (shape.layers <= 0 || shape.kv_heads <= 0 || shape.head_dim <= 0 || shape.tokens <= 0) {
    throw Error(ErrorCode::InvalidArgument, "gpu encode: empty cache");
  }
  check_shape(shape, p.chunk_tokens);
}

int delta_bins(const EncodeParams& p, int layers, int layer, kv::Kind kind) {
  const int group = std::min(2, layer * 3 / std::max(1, layers));
  return kind == kv::Kind::Key ? p.key_bins[group] : p.value_bins[group];
}

StreamTable cpu_encode(const kv::KVCache& cache, const EncodeParams& params, int threads) {
  const kv::CacheShape& s = cache.shape();
  validate(params, s);
  StreamTable t;
  t.shape = s;
  t.chunk_tokens = params.chunk_tokens;
  t.group_size = params.group_size;
  t.streams = canonical_streams(s, params.chunk_tokens);
  const int channels = s.channels();
  const std::size_t n_models = static_cast<std::size_t>(s.layers) * 2 * channels;
  const std::size_t per_chunk = n_models;
  const int chunks = t.chunks();
  const float* data = cache.data().data();

  // Models: CDF offsets in model order, anchor CDF then delta CDF.
  t.models.resize(n_models);
  std::uint32_t cdf_size = 0;
  for (std::size_t m = 0; m < n_models; ++m) {
    const int layer = static_cast<int>(m / (2 * channels));
    const auto kind = static_cast<kv::Kind>((m / channels) % 2);
    ChannelModel& cm = t.models[m];
    cm.anchor_symbols = static_cast<std::uint16_t>(params.anchor_bins);
    cm.delta_symbols = static_cast<std::uint16_t>(delta_bins(params, s.layers, layer, kind));
    cm.anchor_cdf = cdf_size;
    cm.delta_cdf = cdf_size + cm.anchor_symbols;
    cdf_size += cm.anchor_symbols + cm.delta_symbols;
  }
  t.cdfs.assign(cdf_size, 0);

  // Steps from absmax over all chunks, then symbol counts, then CDFs: per model.
  parallel_for(n_models, threads, [&](std::size_t m) {
    ChannelModel& cm = t.models[m];
    float amax = 0, dmax = 0;
    for (int c = 0; c < chunks; ++c) {
      const StreamDesc& d = t.streams[c * per_chunk + m];
      amax = std::max(amax,
                      detail::anchor_absmax(data + d.out_offset, d.out_stride, d.tokens, params.group_size));
    }
    cm.anchor_step = detail::step_for(amax, cm.anchor_symbols);
    for (int c = 0; c < chunks; ++c) {
      const StreamDesc& d = t.streams[c * per_chunk + m];
      dmax = std::max(
          dmax, detail::delta_absmax(data + d.out_offset, d.out_stride, d.tokens, params.group_size, cm));
    }
    cm.delta_step = detail::step_for(dmax, cm.delta_symbols);
    std::vector<std::uint32_t> counts(cm.anchor_symbols + cm.delta_symbols, 0);
    for (int c = 0; c < chunks; ++c) {
      const StreamDesc& d = t.streams[c * per_chunk + m];
      detail::quantize_stream(data + d.out_offset, d.out_stride, d.tokens, params.group_size, cm,
                              [&](std::uint32_t, bool anchor, int sym, float) {
                                ++counts[anchor ? sym : cm.anchor_symbols + sym];
                              });
    }
    detail::build_cdf(counts.data(), cm.anchor_symbols, t.cdfs.data() + cm.anchor_cdf);
    detail::build_cdf(counts.data() + cm.anchor_symbols, cm.delta_symbols, t.cdfs.data() + cm.delta_cdf);
  });

  // Encode every stream into its own slot, then concatenate in stream order.
  std::vector<std::vector<std::uint8_t>> bytes(t.streams.size());
  parallel_for(t.streams.size(), threads, [&](std::size_t i) {
    StreamDesc& d = t.streams[i];
    bytes[i].resize(detail::stream_capacity(d.tokens));
    std::uint32_t flags = 0;
    const std::uint32_t n = detail::encode_stream(
        data + d.out_offset, d.out_stride, d.tokens, params.group_size, t.models[d.model], t.cdfs.data(),
        bytes[i].data(), static_cast<std::uint32_t>(bytes[i].size()), flags);
    if (flags != 0) throw Error(ErrorCode::Internal, "cpu encode: stream exceeded its capacity bound");
    bytes[i].resize(n);
  });
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < t.streams.size(); ++i) {
    t.streams[i].byte_offset = offset;
    t.streams[i].byte_length = static_cast<std::uint32_t>(bytes[i].size());
    offset += bytes[i].size();
  }
  t.payload.reserve(offset);
  for (auto& b : bytes) t.payload.insert(t.payload.end(), b.begin(), b.end());
  seal(t);
  return t;
}

std::vector<std::uint16_t> cpu_decode_fp16(const StreamTable& t, int threads) {
  validate(t);
  std::vector<std::uint16_t> out(t.shape.elements(), 0);
  std::vector<std::uint32_t> flags(t.streams.size(), 0);
  parallel_for(t.streams.size(), threads, [&](std::size_t i) {
    const StreamDesc& d = t.streams[i];
    flags[i] =
        detail::decode_stream(t.payload.data() + d.byte_offset, d.byte_length, d.tokens, t.group_size,
                              t.models[d.model], t.cdfs.data(), out.data() + d.out_offset, d.out_stride);
  });
  for (std::size_t i = 0; i < flags.size(); ++i) {
    if (flags[i] != 0) {
      throw Error(ErrorCode::Format, "stream " + std::to_string(i) + ": corrupt entropy-coded bytes (flags " +
                                         std::to_string(flags[i]) + ")");
    }
  }
  return out;
}

kv::KVCache fp16_to_cache(const kv::CacheShape& shape, std::span<const std::uint16_t> halves) {
  kv::KVCache cache(shape);
  if (halves.size() != cache.data().size()) {
    throw Error(ErrorCode::InvalidArgument, "fp16_to_cache: size does not match the shape");
  }
  auto out = cache.data();
  for (std::size_t i = 0; i < halves.size(); ++i) out[i] = half_to_float(halves[i]);
  return cache;
}

kv::KVCache cpu_decode(const StreamTable& t, int threads) {
  return fp16_to_cache(t.shape, cpu_decode_fp16(t, threads));
}

}  // namespace kvscope::kernels
