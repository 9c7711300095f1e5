// SPDX-License-Identifier: Apache-2.0
#pragma once

// Host side of decoding core/codec bitstreams on the GPU: reads the header
// and tables, validates every section exactly as the CPU decoder does, and
// turns each chunk section into descriptors the kernels consume (one per
// cachegen stream, one per int/fp16 section). Also used by the CPU
// emulation (emulate_gpu_decode_fp16), so the host test covers it.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvscope/codec/bitstream.h"
#include "kvscope/kernels/detail/bitstream_decode.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::kernels::plan {

enum class CodecId : std::uint8_t { Cachegen, Int8, Int4, Fp16 };

struct Layout {
  kv::CacheShape shape;
  CodecId codec = CodecId::Cachegen;
  int chunk_tokens = 0;
  int group_size = 1;
  std::vector<int> M;                                            ///< cachegen: per (layer * 2 + kind)
  enum class Delta { Auto, Always, Never } delta = Delta::Auto;  ///< encoder only
  /// cachegen: what a quantization step covers (layout version 1: Channel).
  detail::CachegenScale scale = detail::CachegenScale::Token;
  /// cachegen: steps a chunk of `count` tokens carries (core/codec's
  /// Layout::step_count); channel c's step at token t is at index
  /// step_base(c) + t * step_stride().
  std::uint64_t step_count(int count) const {
    const auto C = static_cast<std::uint64_t>(shape.channels());
    return scale == detail::CachegenScale::Channel ? C
           : scale == detail::CachegenScale::Token ? static_cast<std::uint64_t>(count)
                                                   : static_cast<std::uint64_t>(count) * shape.kv_heads;
  }
  int step_base(int c) const {
    return scale == detail::CachegenScale::Channel ? c
           : scale == detail::CachegenScale::Token ? 0
                                                   : c / shape.head_dim;
  }
  int step_stride() const {
    return scale == detail::CachegenScale::Channel ? 0
           : scale == detail::CachegenScale::Token ? 1
                                                   : shape.kv_heads;
  }
};

/// cachegen layout versions the GPU path reads (core/codec writes 2 and
/// reads 1 and 2; version 1 has no `scale` and means scale=channel).
inline constexpr std::uint16_t kCachegenOldestVersion = 1;
inline constexpr std::uint16_t kCachegenVersion = 2;

/// Reads the layout from a parsed header. Error(Unsupported), with the
/// reason, for whatever the GPU path does not implement: another codec or
/// layout version, a parameter (or parameter value) it does not know, a
/// calibration file, another entropy coder or table mode; the CPU
/// decoder then decides. Error(Format) for what the CPU rejects too
/// (inconsistent parameters, a bad `scale`, a version 1 stream with one).
Layout read_layout(const codec::StreamInfo& info, std::span<const std::uint8_t> codec_header);

/// Whether the GPU path implements parameter `name` of `codec` (the list in
/// bitstream_plan.cpp; any value the CPU accepts unless listed otherwise).
bool implements_param(CodecId codec, const std::string& name);

/// The codec-private header bytes inside a complete bitstream.
std::span<const std::uint8_t> codec_header_of(const codec::StreamInfo& info,
                                              std::span<const std::uint8_t> bytes);

/// Checks the section directory's order and token ranges (as the CPU does).
void check_sections(const codec::StreamInfo& info, const Layout& layout);

/// Where a model's CDF lies in the pool; n = 0 is the empty model.
struct ModelRef {
  std::uint32_t anchor_offset = 0, delta_offset = 0;
  std::int32_t anchor_n = 0, delta_n = 0;
  std::uint32_t raw = 0;  ///< 1: the channel codes every token as an anchor (no groups)
};

/// Every cachegen model of a stream: index (layer * 2 + kind) * channels + channel.
struct ModelPool {
  std::vector<std::uint32_t> cdf;
  std::vector<ModelRef> models;
  std::vector<bool> table_loaded;  ///< per (layer, kind)
};

/// Sizes the pool for the layout (all models empty until tables are read).
ModelPool make_pool(const Layout& layout);

/// Parses one Table section payload into the pool (Error(Format) like the CPU).
void read_table(const Layout& layout, int lk, std::span<const std::uint8_t> payload, ModelPool& pool);

/// One cachegen stream.
struct StreamDesc {
  std::uint64_t out_offset;   ///< element index of token 0 in the fp16 output
  std::uint32_t byte_offset;  ///< into the batch's bytes
  std::uint32_t byte_length;
  std::uint32_t model;
  std::uint32_t tokens;
  std::uint32_t step_offset;  ///< batch byte offset of token 0's fp16 step (validated on the host)
  std::uint32_t step_stride;  ///< steps between consecutive tokens (0: one step per stream)
  std::int32_t M;
};

/// One int8/int4/fp16 chunk section.
struct SectionDesc {
  std::uint64_t out_offset;   ///< element index of (head 0, token_begin, dim 0)
  std::uint32_t byte_offset;  ///< payload start in the batch's bytes
  std::uint32_t tokens;
};

/// Validates a Chunk section's payload (at `batch_offset` in the batch) and
/// appends its descriptors. Needs the table of its (layer, kind) for cachegen.
void plan_chunk(const Layout& layout, const ModelPool& pool, const codec::SectionInfo& section,
                std::span<const std::uint8_t> payload, std::uint32_t batch_offset,
                std::vector<StreamDesc>& streams, std::vector<SectionDesc>& sections);

/// CRC-32C of a section as the container computes it (header fields + payload);
/// `section` is the whole section, header included.
std::uint32_t section_crc(std::span<const std::uint8_t> section, std::size_t header_bytes);

}  // namespace kvscope::kernels::plan
