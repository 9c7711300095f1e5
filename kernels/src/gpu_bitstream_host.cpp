// SPDX-License-Identifier: Apache-2.0
// Host-only parts of the bitstream GPU path: what it supports (and why
// not), the CPU emulation of the kernels, and the automatic backend choice.

#include <string>

#include "bitstream_plan.h"
#include "cachegen_encode.h"
#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"
#include "kvscope/kernels/detail/bitstream_decode.h"
#include "kvscope/kernels/device.h"
#include "kvscope/kernels/gpu_bitstream.h"

namespace kvscope::kernels {

namespace {
// "gpu decode: codec 'kivi2' has no GPU decoder" -> "codec 'kivi2' has no GPU decoder".
std::string reason_of(const Error& e) {
  std::string m = e.what();
  for (const char* prefix : {"gpu decode: ", "gpu encode: ", "gpu: "}) {
    if (m.rfind(prefix, 0) == 0) return m.substr(std::string(prefix).size());
  }
  return m;
}
}  // namespace

GpuSupport gpu_decode_support(std::span<const std::uint8_t> bitstream) {
  try {
    const codec::StreamInfo info = codec::inspect_stream(bitstream, false);
    plan::read_layout(info, plan::codec_header_of(info, bitstream));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::Unsupported) return {false, reason_of(e)};
    return {false, "the stream's header does not parse (" + std::string(e.what()) + ")"};
  }
  return {true, ""};
}

GpuSupport gpu_encode_support(const kv::CacheShape& shape, const codec::CodecConfig& config) {
  try {
    encode::cachegen_layout(shape, config);
  } catch (const Error& e) {
    return {false, reason_of(e)};
  }
  return {true, ""};
}

std::vector<std::uint16_t> emulate_gpu_decode_fp16(std::span<const std::uint8_t> bytes) {
  const codec::StreamInfo info = codec::inspect_stream(bytes, true);
  const plan::Layout L = plan::read_layout(info, plan::codec_header_of(info, bytes));
  plan::check_sections(info, L);
  if (bytes.size() > 0xffffffffu) throw Error(ErrorCode::Unsupported, "emulation: stream larger than 4 GiB");
  plan::ModelPool pool = plan::make_pool(L);
  std::vector<std::uint16_t> out(L.shape.elements(), 0);
  std::uint32_t flags = 0;
  for (const auto& s : info.sections) {
    const auto payload = bytes.subspan(s.payload_offset, s.payload_bytes);
    if (s.kind == codec::SectionKind::Table) {
      plan::read_table(L, s.layer * 2 + static_cast<int>(s.kv), payload, pool);
      continue;
    }
    std::vector<plan::StreamDesc> streams;
    std::vector<plan::SectionDesc> sections;
    plan::plan_chunk(L, pool, s, payload, static_cast<std::uint32_t>(s.payload_offset), streams, sections);
    // Exactly what the kernels do per thread (gpu_bitstream.cu).
    for (const auto& d : streams) {
      const plan::ModelRef& m = pool.models[d.model];
      flags |= detail::decode_cachegen_stream(
          bytes.data() + d.byte_offset, d.byte_length, d.tokens,
          m.raw ? 1u : static_cast<std::uint32_t>(L.group_size), d.M, bytes.data() + d.step_offset,
          d.step_stride, {pool.cdf.data() + m.anchor_offset, m.anchor_n},
          {pool.cdf.data() + m.delta_offset, m.delta_n}, out.data() + d.out_offset,
          static_cast<std::uint32_t>(L.shape.head_dim));
    }
    const auto codec = L.codec == plan::CodecId::Int8   ? detail::SectionCodec::Int8
                       : L.codec == plan::CodecId::Int4 ? detail::SectionCodec::Int4
                                                        : detail::SectionCodec::Fp16;
    for (const auto& sec : sections) {
      const std::uint64_t values =
          static_cast<std::uint64_t>(L.shape.kv_heads) * sec.tokens * L.shape.head_dim;
      for (std::uint64_t k = 0; k < values; ++k) {
        flags |= detail::decode_section_element(
            bytes.data() + sec.byte_offset, sec.tokens, codec, k, static_cast<std::uint32_t>(L.shape.tokens),
            static_cast<std::uint32_t>(L.shape.head_dim), out.data() + sec.out_offset);
      }
    }
  }
  if (flags != 0) throw Error(ErrorCode::Format, detail::codec_flags_error(flags));
  return out;
}

AutoDecodeResult decode_auto(std::span<const std::uint8_t> bitstream, const codec::DecodeOptions& options) {
  std::string reason;
  if (!cuda_device_available()) {
    reason = "no CUDA device (" + cpu_fallback_reason() + ")";
  } else if (const GpuSupport support = gpu_decode_support(bitstream); !support) {
    reason = support.reason;
  } else {
    // The same cap as the CPU decoder, before the device allocates (docs/hostile-input.md).
    codec::require_within_limit(codec::inspect_stream(bitstream, false).shape.elements(),
                                options.max_elements, "bitstream");
    try {
      return {gpu_decode_bitstream(bitstream), compute_backend(), ""};
    } catch (const Error& e) {
      // A corrupt stream is the same error on either path; a CUDA failure
      // (out of device memory, a driver error) is not the stream's fault.
      if (e.code() != ErrorCode::Internal && e.code() != ErrorCode::Unsupported) throw;
      reason = std::string("the GPU decode failed (") + e.what() + ")";
    }
  }
  return {codec::decode(bitstream, options), "cpu", reason};
}

}  // namespace kvscope::kernels
