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

/// The parameters a stream was coded with (codec::stream_params()): the
/// header's, completed with what each parameter's absence means at the
/// stream's layout version. Error(Format) when the header's parameters do
/// not fit the version (a version 3 stream without a version 3 parameter, a
/// version 4 stream without channel_weighting=calibrated, a version 5
/// stream without reconstruction > 0, ...).
Params stream_layout_params(const Codec& codec, const StreamInfo& info);

/// Parses the codec header and the Table sections of a stream of layout
/// version 1 to 5 and returns its chunk decoder. Error(Format) on a
/// malformed header, table or parameter; Error(Io) for a missing profile.
std::unique_ptr<ChunkDecoder> make_cachegen_decoder(const Codec& codec, const StreamHeader& header,
                                                    const std::vector<std::span<const std::uint8_t>>& tables,
                                                    const DecodeOptions& options);

}  // namespace kvscope::codec::detail::cachegen
