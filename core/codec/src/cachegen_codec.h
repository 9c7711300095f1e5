// SPDX-License-Identifier: Apache-2.0
#pragma once

// The two halves of the `cachegen` codec (codec_cachegen.cpp ties them to
// the registry): the encoder (cachegen_encoder.cpp) and the decoder factory
// (cachegen_decoder.cpp). docs/bitstream.md ("cachegen") is the format.

#include <memory>
#include <span>
#include <vector>

#include "codec_base.h"

namespace kvscope::codec::detail::cachegen {

struct Layout;  // cachegen_internal.h

/// Codec header byte 0: the entropy coder (the range coder of docs/bitstream.md section 2).
inline constexpr std::uint8_t kCoderRange = 0;
/// Codec header byte 1: where the symbol tables are.
inline constexpr std::uint8_t kTablesObject = 0;   ///< one Table section per (layer, kind)
inline constexpr std::uint8_t kTablesProfile = 1;  ///< a calibration profile referenced by hash

/// The layout version and header parameters of a stream with this layout:
/// version 3 with every parameter when it uses a version 3 feature, else
/// version 2 without the version 3 parameters.
void describe_cachegen_header(const Params& params, const Layout& layout, EncodedParts& parts);

/// Encodes `cache` with validated parameters: the codec header, the Table
/// sections (unless a profile is used) and the Chunk sections, with the
/// layout version and header parameters the stream needs.
EncodedParts encode_cachegen(const kv::KVCache& cache, const Params& params, const EncodeOptions& options);

/// Parses the codec header and the Table sections of a stream of layout
/// version 1, 2 or 3 and returns its chunk decoder. Error(Format) on a
/// malformed header, table or parameter; Error(Io) for a missing profile.
std::unique_ptr<ChunkDecoder> make_cachegen_decoder(const Codec& codec, const StreamHeader& header,
                                                    const std::vector<std::span<const std::uint8_t>>& tables,
                                                    const DecodeOptions& options);

}  // namespace kvscope::codec::detail::cachegen
