// SPDX-License-Identifier: Apache-2.0
#pragma once

// Host helpers shared by the GPU cachegen encoder and its CPU emulation:
// the resolved layout of a config, and writing Table/Chunk payloads exactly
// as core/codec does.

#include <cstdint>
#include <span>
#include <vector>

#include "bitstream_plan.h"
#include "kvscope/codec/codec.h"
#include "kvscope/kernels/detail/cachegen_encode.h"

namespace kvscope::kernels::encode {

/// Layout of `config` (codec "cachegen", tables shipped) for `shape`; params
/// missing from the config take the codec's defaults for the shape.
/// Error(InvalidArgument) for unknown or bad parameters, Error(Unsupported)
/// for a calibration file.
plan::Layout cachegen_layout(const kv::CacheShape& shape, const codec::CodecConfig& config);

/// FreqModel::write: empty -> (0, 0); else first and last non-zero symbol,
/// then the frequencies in between, as LEB128 varints.
void write_model(std::vector<std::uint8_t>& out, const std::uint32_t* freq, int n, bool empty);

void write_varint(std::vector<std::uint8_t>& out, std::uint64_t v);

/// The per-tensor geometry the encoder's per-stream functions use.
detail::CachegenGeom geometry(const plan::Layout& layout);

/// core/codec's choose_raw with tables shipped: whether a channel codes raw
/// symbols (every token as an anchor) rather than anchor/delta groups, from
/// its raw, anchor and delta symbol counts (Auto: fewer ideal bits including
/// the serialised tables). Host-only: it uses the host's log2 like the codec.
bool choose_raw(plan::Layout::Delta mode, std::span<const std::uint32_t> raw,
                std::span<const std::uint32_t> anchor, std::span<const std::uint32_t> delta);

}  // namespace kvscope::kernels::encode
