// SPDX-License-Identifier: Apache-2.0
// `cachegen`: the encoder of the CacheGen paper (docs/architecture.md,
// "CacheGen"; the format: docs/bitstream.md, "cachegen") in the codec registry. One concept per file:
//   cachegen_params.cpp     parameter specs and their resolution (Layout)
//   cachegen_quantizer.cpp  steps, Q and anchor/delta symbols (integer and float deltas)
//   cachegen_tables.cpp     shipped symbol tables at `table_bits` precision
//   cachegen_steps.cpp      steps in a chunk (f16 or range coded)
//   cachegen_encoder.cpp    models and sections
//   cachegen_decoder.cpp    header/table parsing and the chunk decoders
//   cachegen_block_avx2.cpp the AVX2 decoder of 8-channel blocks
#include "cachegen_codec.h"
#include "cachegen_internal.h"
#include "codecs.h"

namespace kvscope::codec::detail {
namespace cachegen {
namespace {

class CachegenCodec : public CodecBase {
 public:
  std::string name() const override { return "cachegen"; }
  std::string description() const override {
    return "CacheGen (paper): anchor/delta token groups, layer-wise bins, per-channel arithmetic coding.";
  }
  std::vector<ParamSpec> params(const kv::CacheShape* shape) const override { return param_specs(shape); }
  ParamSet complete_params(const ParamSet& given, const kv::CacheShape& shape) const override {
    return complete_layer_splits(given, shape.layers);
  }
  // Version 2 added the `scale` parameter and the scaled anchor prediction;
  // version 3 sinks, float deltas, coded steps, coarse tables and pre-RoPE
  // keys (streams that use none of them are still written as version 2);
  // version 4 calibrated channel weighting (the channel scales); version 5
  // centroid reconstruction; version 1 streams have no `scale` and decode as
  // scale=channel.
  std::uint16_t codec_version() const override { return kLayoutVersionCentroid; }
  std::uint16_t oldest_codec_version() const override { return 1; }

  EncodedParts encode_parts(const kv::KVCache& cache, const Params& p,
                            const EncodeOptions& o) const override {
    return encode_cachegen(cache, p, o);
  }

  void describe_header(const Params& p, const kv::CacheShape& shape, EncodedParts& parts) const override {
    describe_cachegen_header(p, make_layout(p, shape), parts);
  }

  ParamSet coded_params(const StreamInfo& info) const override {
    return stream_layout_params(*this, info).values();
  }

  bool has_tables(const StreamHeader& header) const override {
    return header.codec_header.size() >= 2 && header.codec_header[1] == kTablesObject;
  }

  std::unique_ptr<ChunkDecoder> make_decoder(const StreamHeader& header,
                                             const std::vector<std::span<const std::uint8_t>>& tables,
                                             const DecodeOptions& options) const override {
    return make_cachegen_decoder(*this, header, tables, options);
  }
};

}  // namespace
}  // namespace cachegen

const Codec& cachegen_codec() {
  static const cachegen::CachegenCodec c;
  return c;
}

}  // namespace kvscope::codec::detail
