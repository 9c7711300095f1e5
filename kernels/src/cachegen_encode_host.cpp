// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "cachegen_encode.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/entropy_bits.h"
#include "kvscope/common/error.h"
#include "kvscope/kernels/detail/cachegen_encode.h"
#include "kvscope/kernels/gpu_bitstream.h"

namespace kvscope::kernels {
namespace encode {

plan::Layout cachegen_layout(const kv::CacheShape& shape, const codec::CodecConfig& config) {
  if (config.codec != "cachegen") {
    throw Error(ErrorCode::Unsupported,
                "gpu encode: codec '" + config.codec + "' has no GPU cachegen encoder");
  }
  codec::StreamInfo info;
  info.codec = "cachegen";
  info.codec_version = plan::kCachegenVersion;  // what codec::encode writes
  info.shape = shape;
  // Parameters the GPU encoder does not implement are fine at their neutral
  // value (docs/bitstream.md, cachegen "Version 3": the codec then writes the
  // layout version 2 the GPU implements, which CachegenEncodeEmulation.*
  // checks byte for byte), whether given or the codec's default; any other
  // value (the codec's defaults use sinks and pre-RoPE keys) is the CPU's.
  static const std::map<std::string, std::string> neutral = {{"sinks", "0"},
                                                             {"delta_mode", "integer"},
                                                             {"anchor_bins", "256"},
                                                             {"step_coding", "fp16"},
                                                             {"table_bits", "16"},
                                                             {"key_space", "post_rope"},
                                                             {"channel_weighting", "off"},
                                                             {"rounding", "0.5"},
                                                             {"reconstruction", "0"}};
  std::map<std::string, std::string> effective;
  for (const auto& spec : codec::find_codec("cachegen").params(&shape))
    effective[spec.name] = spec.default_value;
  for (const auto& [k, v] : config.params) {
    if (!effective.count(k))
      throw Error(ErrorCode::InvalidArgument, "gpu encode: unknown parameter '" + k + "'");
    effective[k] = v;
  }
  for (const auto& [k, v] : effective) {
    if (plan::implements_param(plan::CodecId::Cachegen, k)) {
      info.params[k] = v;
    } else if (const auto n = neutral.find(k); n == neutral.end() || v != n->second) {
      throw Error(ErrorCode::Unsupported,
                  "gpu encode: cachegen " + k + "=" + v + " has no GPU kernel (the CPU encodes it)");
    }
  }
  if (info.params.count("profile") && !info.params["profile"].empty()) {
    throw Error(ErrorCode::Unsupported, "gpu encode: cachegen with a calibration file is encoded on the CPU");
  }
  const std::uint8_t header[2] = {0, 0};  // range coder, tables shipped
  plan::Layout L;
  try {
    L = plan::read_layout(info, header);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::Format) throw Error(ErrorCode::InvalidArgument, e.what());
    throw;
  }
  const std::string delta = info.params.count("delta") ? info.params["delta"] : "auto";
  if (delta != "auto" && delta != "always" && delta != "never") {
    throw Error(ErrorCode::InvalidArgument, "gpu encode: parameter 'delta' must be auto, always or never");
  }
  L.delta = delta == "always"  ? plan::Layout::Delta::Always
            : delta == "never" ? plan::Layout::Delta::Never
                               : plan::Layout::Delta::Auto;
  return L;
}

namespace {
double table_bits(std::span<const std::uint32_t> counts) {
  std::vector<std::uint32_t> freq(counts.size());
  bool bad = false;
  const bool ok = detail::normalise_counts(counts.data(), static_cast<int>(counts.size()), freq.data(), bad);
  std::vector<std::uint8_t> tmp;
  write_model(tmp, freq.data(), static_cast<int>(freq.size()), !ok);
  return 8.0 * double(tmp.size());
}
}  // namespace

bool choose_raw(plan::Layout::Delta mode, std::span<const std::uint32_t> raw,
                std::span<const std::uint32_t> anchor, std::span<const std::uint32_t> delta) {
  if (mode == plan::Layout::Delta::Never) return true;
  if (mode == plan::Layout::Delta::Always) return false;
  using codec::entropy_bits;  // the codec's own, so the choice agrees with it
  const double raw_bits = entropy_bits(raw) + table_bits(raw);
  const double delta_bits =
      entropy_bits(anchor) + entropy_bits(delta) + table_bits(anchor) + table_bits(delta);
  return raw_bits < delta_bits;
}

void write_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

void write_model(std::vector<std::uint8_t>& out, const std::uint32_t* freq, int n, bool empty) {
  if (empty) {
    write_varint(out, 0);
    write_varint(out, 0);
    return;
  }
  int first = 0, last = n - 1;
  while (freq[first] == 0) ++first;
  while (freq[last] == 0) --last;
  write_varint(out, static_cast<std::uint64_t>(first));
  write_varint(out, static_cast<std::uint64_t>(last - first + 1));
  for (int s = first; s <= last; ++s) write_varint(out, freq[s]);
}

}  // namespace encode

namespace encode {
detail::CachegenGeom geometry(const plan::Layout& L) {
  const auto& sh = L.shape;
  return {static_cast<std::uint32_t>(sh.channels()),
          static_cast<std::uint32_t>(sh.head_dim),
          static_cast<std::uint32_t>(sh.kv_heads),
          static_cast<std::uint32_t>(sh.tokens),
          static_cast<std::uint32_t>(L.chunk_tokens),
          static_cast<std::uint32_t>((sh.tokens + L.chunk_tokens - 1) / L.chunk_tokens),
          static_cast<std::uint32_t>(L.group_size),
          L.scale};
}
}  // namespace encode

std::vector<std::vector<std::uint8_t>> emulate_gpu_encode_cachegen_sections(
    const kv::KVCache& cache, const codec::CodecConfig& config) {
  const plan::Layout L = encode::cachegen_layout(cache.shape(), config);
  const detail::CachegenGeom g = encode::geometry(L);
  const auto& sh = L.shape;
  const int C = sh.channels();
  const std::uint32_t stride = detail::cachegen_step_stride(g);
  const std::uint64_t n_steps = detail::cachegen_tensor_steps(g);
  std::vector<std::vector<std::uint8_t>> out;
  for (int lk = 0; lk < sh.layers * 2; ++lk) {
    const int M = L.M[static_cast<std::size_t>(lk)];
    const int A = 2 * M + 1, B = 4 * M + 1;
    const float* tensor = cache.data().data() + static_cast<std::size_t>(lk) * sh.tensor_elements();
    // Kernel "steps": one thread per step of the tensor.
    std::vector<std::uint16_t> steps(n_steps);
    for (std::uint64_t i = 0; i < n_steps; ++i) {
      steps[i] = detail::cachegen_slot_step(tensor, g, i, M);
      if (steps[i] == 0xffffu)
        throw Error(ErrorCode::InvalidArgument, "gpu encode: NaN, infinite or too large values");
    }
    auto stream_steps = [&](std::uint32_t chunk, std::uint32_t c) {
      return steps.data() + detail::cachegen_chunk_step_offset(g, chunk) + detail::cachegen_step_base(g, c);
    };
    // Kernel "count": one thread per stream, symbol counts per channel.
    std::vector<std::uint32_t> ac(static_cast<std::size_t>(C) * A, 0), dc(static_cast<std::size_t>(C) * B, 0),
        rc(static_cast<std::size_t>(C) * A, 0);
    for (std::uint32_t ch = 0; ch < g.chunks; ++ch) {
      const std::uint32_t n = detail::cachegen_chunk_count(g, ch);
      for (std::uint32_t c = 0; c < g.C; ++c) {
        detail::cachegen_stream_symbols(
            detail::cachegen_channel_ptr(tensor, g, ch, c), g.D, n, stream_steps(ch, c), stride, g.group, M,
            [&](bool anchor, int s, int r) {
              ++(anchor ? ac[std::size_t(c) * A + s] : dc[std::size_t(c) * B + s]);
              ++rc[std::size_t(c) * A + r];
            });
      }
    }
    // Pass 2 (kernel "normalise"): models, and the Table payload.
    std::vector<std::uint32_t> af(static_cast<std::size_t>(C) * A), df(static_cast<std::size_t>(C) * B);
    std::vector<std::uint32_t> acdf(static_cast<std::size_t>(C) * (A + 1)),
        dcdf(static_cast<std::size_t>(C) * (B + 1));
    std::vector<std::uint8_t> table;
    bool bad = false;
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(C));
    for (int c = 0; c < C; ++c) {
      const std::size_t ca = static_cast<std::size_t>(c) * A, cb = static_cast<std::size_t>(c) * B;
      const bool r =
          encode::choose_raw(L.delta, {&rc[ca], static_cast<std::size_t>(A)},
                             {&ac[ca], static_cast<std::size_t>(A)}, {&dc[cb], static_cast<std::size_t>(B)});
      raw[static_cast<std::size_t>(c)] = r ? 1 : 0;
      const bool a_ok = detail::normalise_counts(r ? &rc[ca] : &ac[ca], A, &af[ca], bad);
      const bool d_ok = !r && detail::normalise_counts(&dc[cb], B, &df[cb], bad);
      if (!d_ok) std::fill(&df[cb], &df[cb] + B, 0u);
      table.push_back(raw[static_cast<std::size_t>(c)]);
      encode::write_model(table, &af[ca], A, !a_ok);
      encode::write_model(table, &df[cb], B, !d_ok);
      for (int s = 0; s < A; ++s)
        acdf[static_cast<std::size_t>(c) * (A + 1) + s + 1] =
            acdf[static_cast<std::size_t>(c) * (A + 1) + s] + af[ca + s];
      for (int s = 0; s < B; ++s)
        dcdf[static_cast<std::size_t>(c) * (B + 1) + s + 1] =
            dcdf[static_cast<std::size_t>(c) * (B + 1) + s] + df[cb + s];
    }
    if (bad) throw Error(ErrorCode::Internal, "gpu encode: frequency normalisation failed");
    out.push_back(std::move(table));
    // Pass 3 (kernel "encode"): one range-coded stream per channel and chunk.
    for (std::uint32_t ch = 0; ch < g.chunks; ++ch) {
      const std::uint32_t n = detail::cachegen_chunk_count(g, ch);
      std::vector<std::uint8_t> payload;
      const std::uint16_t* cs = steps.data() + detail::cachegen_chunk_step_offset(g, ch);
      const std::uint64_t chunk_steps = L.step_count(static_cast<int>(n));
      for (std::uint64_t i = 0; i < chunk_steps; ++i) {
        payload.push_back(static_cast<std::uint8_t>(cs[i] & 0xff));
        payload.push_back(static_cast<std::uint8_t>(cs[i] >> 8));
      }
      std::vector<std::vector<std::uint8_t>> streams(static_cast<std::size_t>(C));
      for (std::uint32_t c = 0; c < g.C; ++c) {
        auto& buf = streams[c];
        buf.resize(std::size_t(n) * 3 + 8);
        detail::CodecRangeEncoder enc;
        enc.init(buf.data(), static_cast<std::uint32_t>(buf.size()));
        const std::uint32_t* a = &acdf[static_cast<std::size_t>(c) * (A + 1)];
        const std::uint32_t* d = &dcdf[static_cast<std::size_t>(c) * (B + 1)];
        detail::cachegen_stream_symbols(detail::cachegen_channel_ptr(tensor, g, ch, c), g.D, n,
                                        stream_steps(ch, c), stride, raw[c] ? 1u : g.group, M,
                                        [&](bool anchor, int s, int) {
                                          const std::uint32_t* cdf = anchor ? a : d;
                                          enc.encode(cdf[s], cdf[s + 1] - cdf[s]);
                                        });
        enc.finish();
        if (enc.overflow) throw Error(ErrorCode::Internal, "gpu encode: stream exceeded its capacity bound");
        buf.resize(enc.size);
      }
      for (const auto& s : streams) encode::write_varint(payload, s.size());
      for (const auto& s : streams) payload.insert(payload.end(), s.begin(), s.end());
      out.push_back(std::move(payload));
    }
  }
  return out;
}

namespace {

// The codec header of cachegen with tables shipped: range coder, per-object tables.
std::vector<std::uint8_t> frame_cachegen(const kv::KVCache& cache, const codec::CodecConfig& config,
                                         std::vector<std::vector<std::uint8_t>> sections) {
  const std::uint8_t codec_header[2] = {0, 0};
  return codec::assemble_stream(cache.shape(), cache.info, config, codec_header, true, std::move(sections));
}

}  // namespace

std::vector<std::uint8_t> emulate_gpu_encode_cachegen(const kv::KVCache& cache,
                                                      const codec::CodecConfig& config) {
  return frame_cachegen(cache, config, emulate_gpu_encode_cachegen_sections(cache, config));
}

std::vector<std::uint8_t> gpu_encode_cachegen(const kv::KVCache& cache, const codec::CodecConfig& config) {
  return frame_cachegen(cache, config, gpu_encode_cachegen_sections(cache, config));
}

}  // namespace kvscope::kernels
