// SPDX-License-Identifier: Apache-2.0
#pragma once

// What every codec implementation shares: parameter parsing against its
// ParamSpecs, the container assembly, and the per-chunk decoder interface
// that decode(), decode_section() and parallel decoding build on.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/codec.h"

namespace kvscope::codec::detail {

/// Parameters after validation against the codec's specs: every key present.
class Params {
 public:
  Params(const std::string& codec, const std::vector<ParamSpec>& specs, const ParamSet& given);
  int get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  const std::string& get(const std::string& name) const;
  std::vector<int> get_int_list(const std::string& name) const;
  const ParamSet& values() const { return values_; }

 private:
  std::string codec_;
  ParamSet values_;
};

/// One encoded section before framing.
struct SectionData {
  SectionKind kind = SectionKind::Chunk;
  int layer = 0;
  kv::Kind kv = kv::Kind::Key;
  int token_begin = 0;
  int token_count = 0;
  std::vector<std::uint8_t> payload;
  std::size_t table_bytes = 0;  ///< part of payload that is side info other than steps (tables, lengths)
  std::size_t step_bytes = 0;   ///< part of payload that is quantization steps (scales)
};

/// What a codec's encoder produces; CodecBase frames it.
struct EncodedParts {
  std::vector<std::uint8_t> codec_header;  ///< codec-private header bytes
  std::vector<SectionData> sections;       ///< in stream order
  double entropy_bits = 0;                 ///< total empirical entropy of coded symbols (0 if none)
  std::size_t extra_table_bytes = 0;       ///< codec_header bytes that are tables
  /// Codec layout version written in the header; 0 = the codec's codec_version().
  std::uint16_t codec_version = 0;
  /// Parameters written in the header when set (else every validated
  /// parameter): lets a codec leave out parameters an older layout version
  /// does not have.
  std::optional<ParamSet> header_params;
};

/// A parsed stream header, as decoders see it.
struct StreamHeader {
  StreamInfo info;
  std::span<const std::uint8_t> codec_header;
};

/// [kv_heads, tokens, head_dim] destination of one (layer, kind).
struct TensorOut {
  float* data = nullptr;
  int kv_heads = 0;
  int tokens = 0;  ///< tokens in the destination tensor (row stride)
  int head_dim = 0;
  int token_offset = 0;  ///< where token_begin of the chunk lands in the destination
};

/// Decodes chunk sections of one stream; thread-safe for distinct chunks.
class ChunkDecoder {
 public:
  virtual ~ChunkDecoder() = default;
  /// Decodes chunk `chunk` (payload already CRC-checked) into `out`.
  virtual void decode(const SectionInfo& chunk, std::span<const std::uint8_t> payload,
                      const TensorOut& out) const = 0;
};

/// Base of the built-in codecs.
class CodecBase : public Codec {
 public:
  /// Version of this codec's private header/payload layout.
  virtual std::uint16_t codec_version() const { return 1; }
  /// The oldest codec layout version this build still decodes (streams with
  /// a version in [oldest_codec_version(), codec_version()] are accepted).
  virtual std::uint16_t oldest_codec_version() const { return codec_version(); }

  EncodeResult encode(const kv::KVCache& cache, const ParamSet& params,
                      const EncodeOptions& options = {}) const final;

  /// The user's parameters completed for this shape before they are
  /// validated (what encode() validates and writes into the header). The
  /// default returns them as given.
  virtual ParamSet complete_params(const ParamSet& given, const kv::CacheShape& shape) const {
    (void)shape;
    return given;
  }

  /// Builds the sections. `params` are validated.
  virtual EncodedParts encode_parts(const kv::KVCache& cache, const Params& params,
                                    const EncodeOptions& options) const = 0;

  /// Prepares decoding: parses the codec header and checks the section
  /// layout. `tables` gives the Table sections' payloads by (layer*2+kind)
  /// (empty span where none); only those needed may be filled
  /// (decode_section passes one).
  virtual std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                                     const std::vector<std::span<const std::uint8_t>>& tables,
                                                     const DecodeOptions& options) const = 0;

  /// Sets the layout version and header parameters of `parts` for these
  /// parameters (what encode_parts() sets; assemble_stream() frames payloads
  /// made elsewhere with it). The default leaves both to the container.
  virtual void describe_header(const Params& params, const kv::CacheShape& shape, EncodedParts& parts) const {
    (void)params;
    (void)shape;
    (void)parts;
  }

  /// kvscope::codec::stream_params() for a stream of this codec whose
  /// version is supported. The default validates the header's parameters
  /// and fills the others with their defaults.
  virtual ParamSet coded_params(const StreamInfo& info) const;

  /// Whether this codec writes one Table section before the chunks of each (layer, kind).
  virtual bool has_tables(const StreamHeader& header) const {
    (void)header;
    return false;
  }
};

/// Standard chunk parameter shared by codecs.
ParamSpec chunk_tokens_spec(int default_tokens);

/// Splits [0, tokens) into chunks of at most chunk_tokens.
int chunk_count(int tokens, int chunk_tokens);

/// Throws Error(InvalidArgument) if any value is NaN or infinite.
void require_finite(const kv::KVCache& cache, const std::string& codec);

/// fp16 scale >= value (rounded up so that |x|/scale never exceeds the range).
std::uint16_t half_scale_up(float value, const std::string& codec);

/// Maps SectionInfo to the destination region of a full cache.
TensorOut tensor_out(kv::KVCache& cache, const SectionInfo& s);

/// Empirical entropy, in bits, of symbols with these counts.
double entropy_bits(std::span<const std::uint64_t> counts);

/// Bin count of every layer from layer groups: `bins[g]` applies from layer
/// `splits[g-1]` (0 for g = 0) up to the next split; with no splits and one
/// entry per layer, `bins` itself. Error(InvalidArgument), prefixed with
/// `codec` and naming the parameters, unless splits has one entry fewer than
/// bins and is strictly increasing within [1, layers-1] (or the per-layer form).
std::vector<int> bins_per_layer(const std::string& codec, const std::vector<int>& bins,
                                const std::vector<int>& splits, int layers, const std::string& bins_name,
                                const std::string& splits_name);

}  // namespace kvscope::codec::detail

namespace kvscope::codec::detail {
/// Parameters read from a stream: validated like user input, but a bad value
/// is a Format error (the stream is malformed), not InvalidArgument.
Params stream_params(const Codec& codec, const StreamHeader& header);
}  // namespace kvscope::codec::detail
