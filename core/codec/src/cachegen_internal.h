#pragma once

// Pieces of `cachegen` shared by the codec, calibration profiles and the
// stage analysis: the parameter layout, the quantizer and symbol mapping,
// and the profile file.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "codec_base.h"
#include "entropy.h"
#include "kvscope/codec/cachegen_prediction.h"

namespace kvscope::codec::detail::cachegen {

/// Resolved cachegen settings for one cache shape.
struct Layout {
  int layers = 0;
  int channels = 0;
  int group_size = 10;
  int chunk_tokens = 1024;
  enum class Delta { Auto, Always, Never } delta = Delta::Auto;
  /// What one quantization step covers: one token's values over all
  /// channels of the layer (Token), over one KV head's channels (Head), or
  /// one channel over the whole chunk (Channel, the only scale of layout
  /// version 1).
  enum class Scale { Token, Head, Channel } scale = Scale::Token;
  int heads = 1, head_dim = 1;
  std::vector<int> bins[2];  ///< per layer, for K (0) and V (1)
  int M(int layer, int kind) const { return bins[kind][layer] / 2 - 1; }
  /// Number of steps a chunk of `count` tokens carries.
  int step_count(int count) const {
    return scale == Scale::Channel ? channels : scale == Scale::Token ? count : count * heads;
  }
  /// Step index of channel c at token t of the chunk (0-based):
  /// step_base(c) + t * step_stride().
  int step_base(int c) const {
    return scale == Scale::Channel ? c : scale == Scale::Token ? 0 : c / head_dim;
  }
  int step_stride() const { return scale == Scale::Channel ? 0 : scale == Scale::Token ? 1 : heads; }
  int step_index(int c, int t) const { return step_base(c) + t * step_stride(); }
};

// Delta tokens are coded against predict_from_anchor(q_anchor,
// anchor_ratio(step_anchor, step_token), M) (kvscope/codec/cachegen_prediction.h).

/// The scale parameter's text form ("token", "head", "channel"), as
/// param_specs lists the choices.
const char* to_string(Layout::Scale s);

/// Cachegen's parameter specs for a shape (defaults scale with layers).
std::vector<ParamSpec> param_specs(const kv::CacheShape* shape);
/// Builds the layout; Error(InvalidArgument) naming the parameter when the
/// layer splits do not fit the bins lists or the layer count.
Layout make_layout(const Params& p, const kv::CacheShape& shape);

/// Anchor symbols are q + M in [0, 2M]; delta symbols q - prediction + 2M in [0, 4M].
inline int anchor_alphabet(int M) {
  return 2 * M + 1;
}
inline int delta_alphabet(int M) {
  return 4 * M + 1;
}

/// Quantized symbols of one (layer, kind) for one chunk of tokens.
struct ChunkSymbols {
  int begin = 0, count = 0;
  std::vector<std::uint16_t> steps;  ///< fp16 steps, Layout::step_count(count), see Layout::step_index
  std::vector<std::uint16_t> sym;    ///< channel-major [channel][token], anchor/delta alphabet indices
  std::vector<std::uint16_t> raw;    ///< channel-major [channel][token], Q + M (every token as an anchor)
};

/// Adds a chunk's raw symbols (Q + M) to per-channel counts [c*A + s].
void count_raw(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
               std::vector<std::uint64_t>& raw_counts);

/// Whether channel c codes raw symbols (1) or anchor/delta groups (0), for
/// the layout's delta setting: Auto picks the cheaper, counting the ideal
/// code length plus the serialised tables when `tables_shipped`.
std::uint8_t choose_raw(const Layout& layout, std::span<const std::uint64_t> raw,
                        std::span<const std::uint64_t> anchor, std::span<const std::uint64_t> delta,
                        bool tables_shipped);

/// Quantizes tokens [begin, begin+count) of (layer, kind): per step slot
/// (Layout::Scale) step = fp16-up(absmax over the slot's values / M);
/// Q = round(x / step); anchor tokens (every group_size-th from the chunk
/// start) keep Q, others store Q - predict_from_anchor().
ChunkSymbols quantize_chunk(const kv::KVCache& cache, int layer, kv::Kind kind, int begin, int count,
                            const Layout& layout);

/// Adds a chunk's symbols to per-channel counts ([c*A + s] and [c*B + s]).
void count_symbols(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
                   std::vector<std::uint64_t>& anchor_counts, std::vector<std::uint64_t>& delta_counts);

/// A parsed profile.
struct Profile {
  Layout layout;                  ///< layers, channels, group size, bins
  std::vector<FreqModel> anchor;  ///< index (layer*2+kind)*channels + channel
  std::vector<FreqModel> delta;   ///< empty for raw channels
  std::vector<std::uint8_t> raw;  ///< 1 = channel codes every token as an anchor
  std::string hash;
};

/// Whether a profile's models fit streams of this layout (same layers,
/// channels, bins and scale).
inline bool profile_fits(const Profile& p, const Layout& L) {
  return p.layout.layers == L.layers && p.layout.channels == L.channels && p.layout.bins[0] == L.bins[0] &&
         p.layout.bins[1] == L.bins[1] && p.layout.scale == L.scale;
}

/// Parses and validates profile file bytes (Error(Format|Checksum)).
Profile parse_profile(std::span<const std::uint8_t> bytes, const std::string& label);

/// Loads the profile with this hash from `dir` (Error(Io) naming the file if missing).
Profile load_profile_by_hash(const std::string& hash, const std::string& dir);

/// Loads a profile from a path.
Profile load_profile_file(const std::string& path);

/// FNV-1a 64 of bytes, as 16 hex digits.
std::string fnv_hex(std::span<const std::uint8_t> bytes);

}  // namespace kvscope::codec::detail::cachegen
