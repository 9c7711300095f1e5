// SPDX-License-Identifier: Apache-2.0
#pragma once

// Pieces of `cachegen` shared by its encoder, decoders, calibration profiles,
// the stage analysis and the pipeline trace: the resolved parameter layout,
// the quantizer and symbol mapping, and the profile file. docs/bitstream.md
// ("cachegen") is the specification every piece follows.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "codec_base.h"
#include "entropy.h"
#include "kvscope/codec/cachegen_prediction.h"
#include "kvscope/codec/channel_weighting.h"

namespace kvscope::codec::detail::cachegen {

/// The layout version this build writes for streams that use a version 3
/// feature (sinks, float deltas, coded steps, coarse tables, pre-RoPE keys);
/// streams without one are written as version 2, byte for byte as before.
inline constexpr std::uint16_t kLayoutVersion = 3;
inline constexpr std::uint16_t kLayoutVersionPlain = 2;
/// The layout version of streams with calibrated channel weighting (their
/// codec header carries the channel scales).
inline constexpr std::uint16_t kLayoutVersionWeighted = 4;
/// The layout version of streams decoded with centroid reconstruction
/// (parameter `reconstruction` > 0; weighted or not, as `channel_weighting`
/// says).
inline constexpr std::uint16_t kLayoutVersionCentroid = 5;

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

  // Layout version 3. Each default is the version 2 behaviour.
  /// The first `sinks` tokens of the cache are stored as f16, not quantized.
  int sinks = 0;
  /// Integer: deltas code Q minus the anchor's Q re-expressed in the token's
  /// step (lossless prediction). Float (the paper's change-based coding):
  /// anchors are quantized on `anchor_bins`, other tokens quantize their
  /// value minus the reconstructed anchor on the layer's bins.
  enum class DeltaMode { Integer, Float } delta_mode = DeltaMode::Integer;
  int anchor_bins = 256;  ///< Float mode only
  /// Fp16: steps stored as f16; Coded: f16 steps range coded (lossless).
  enum class StepCoding { Fp16, Coded } step_coding = StepCoding::Fp16;
  /// Precision of shipped tables: frequencies sum to 2^table_bits (scaled by
  /// 2^(16 - table_bits) when decoding).
  int table_bits = 16;
  /// PostRope: keys coded as the cache holds them; PreRope: RoPE is removed
  /// before quantizing and re-applied after decoding.
  enum class KeySpace { PostRope, PreRope } key_space = KeySpace::PostRope;
  /// Encoder only (not in the stream): a value rounds away from zero once
  /// its magnitude passes `rounding` of a step (0.5 = round to nearest).
  float rounding = 0.5f;

  // Layout version 4: calibrated channel weighting.
  /// Empty, or per (layer * 2 + kind) x channel the f16 value a decoder
  /// multiplies dequantized values by (the encoder divides by it first); a
  /// kind not weighted holds 1.0 throughout and is not stored.
  std::vector<float> channel_scale;
  /// Bit k set when kind k is weighted (stored in the codec header).
  std::uint8_t weighted_kinds = 0;
  bool weighted() const { return weighted_kinds != 0; }

  // Layout version 5: centroid reconstruction.
  /// 0: a decoded value is Q * step (the bin's midpoint); > 0: it is moved
  /// toward the bin's likelier neighbour by this fraction of the centroid
  /// offset the channel's anchor table implies (reconstruction_level()).
  /// Integer delta mode only (0 with float deltas).
  float reconstruction = 0.0f;
  int version() const;

  int M(int layer, int kind) const { return bins[kind][layer] / 2 - 1; }
  /// M of anchor symbols: the layer's M, or anchor_bins' in float mode.
  int anchor_M(int layer, int kind) const {
    return delta_mode == DeltaMode::Float ? anchor_bins / 2 - 1 : M(layer, kind);
  }
  /// Anchor symbols are Q + M_a in [0, 2 M_a].
  int anchor_alphabet(int layer, int kind) const { return 2 * anchor_M(layer, kind) + 1; }
  /// Integer deltas are Q - prediction + 2M in [0, 4M]; float deltas Q + M in [0, 2M].
  int delta_alphabet(int layer, int kind) const {
    return delta_mode == DeltaMode::Float ? 2 * M(layer, kind) + 1 : 4 * M(layer, kind) + 1;
  }
  /// Tokens of chunk [begin, begin + count) stored exactly (the chunk's first ones).
  int sink_tokens(int begin, int count) const { return std::clamp(sinks - begin, 0, count); }
  /// Whether a stream with this layout needs layout version 3.
  bool needs_v3() const {
    return sinks > 0 || delta_mode != DeltaMode::Integer || step_coding != StepCoding::Fp16 ||
           table_bits != 16 || key_space != KeySpace::PostRope;
  }

  /// Number of steps a chunk of `count` coded tokens carries.
  int step_count(int count) const {
    return scale == Scale::Channel ? channels : scale == Scale::Token ? count : count * heads;
  }
  /// Step index of channel c at coded token t of the chunk (0-based):
  /// step_base(c) + t * step_stride().
  int step_base(int c) const {
    return scale == Scale::Channel ? c : scale == Scale::Token ? 0 : c / head_dim;
  }
  int step_stride() const { return scale == Scale::Channel ? 0 : scale == Scale::Token ? 1 : heads; }
  int step_index(int c, int t) const { return step_base(c) + t * step_stride(); }
};

/// The names of the version 3 parameters and the value that means "as in
/// version 2": a version 3 stream carries them, a version 2 stream does not.
struct V3Param {
  const char* name;
  const char* neutral;
};
inline constexpr V3Param kV3Params[] = {{"sinks", "0"},         {"delta_mode", "integer"},
                                        {"anchor_bins", "256"}, {"step_coding", "fp16"},
                                        {"table_bits", "16"},   {"key_space", "post_rope"}};

// Integer-mode delta tokens are coded against predict_from_anchor(q_anchor,
// anchor_ratio(step_anchor, step_token), M) (kvscope/codec/cachegen_prediction.h).

/// Centroid reconstruction (layout version 5, docs/bitstream.md "cachegen",
/// "Version 5"): the level a decoder multiplies by the step for Q = q of a
/// channel whose anchor model is `anchor` (symbols Q + M, 2M + 1 of them):
/// float(q) + alpha * (p(q+1) - p(q-1)) / (6 * (p(q-1) + 2 p(q) + p(q+1))),
/// p being the model's frequencies (0 outside [-M, M]), in float32, each
/// operation rounded; float(q) when the denominator is 0. That offset is the
/// centroid of a density that is linear across the bin through the averages
/// of neighbouring bins: at most 1/6 of a step, toward the likelier side.
inline float reconstruction_level(const FreqModel& anchor, int M, float alpha, int q) {
  auto p = [&](int k) -> std::uint32_t {
    const int s = k + M;
    return s < 0 || s > 2 * M || s >= anchor.size() ? 0u : anchor.freq(s);
  };
  const std::uint32_t lo = p(q - 1), mid = p(q), hi = p(q + 1);
  const std::uint32_t den = 6 * (lo + 2 * mid + hi);
  if (alpha == 0.0f || den == 0) return float(q);
  const float offset = (float(std::int32_t(hi) - std::int32_t(lo)) / float(den));
  return float(q) + alpha * offset;
}

/// reconstruction_level() for every q in [-M, M] into levels[q + M].
inline void reconstruction_levels(const FreqModel& anchor, int M, float alpha, float* levels) {
  for (int q = -M; q <= M; ++q) levels[q + M] = reconstruction_level(anchor, M, alpha, q);
}

/// The scale parameter's text form ("token", "head", "channel"), as
/// param_specs lists the choices.
const char* to_string(Layout::Scale s);

/// Cachegen's parameter specs for a shape (defaults scale with layers).
std::vector<ParamSpec> param_specs(const kv::CacheShape* shape);
/// `given` with the layer splits of group bins filled in: bins with more
/// than one entry but fewer than `layers`, given without their splits (the
/// defaults' bins have one entry per layer, so empty splits), get the splits
/// layout version 2's defaults used (3 key groups: thirds; 2 value groups:
/// the first (layers + 8) / 16 layers), so ladders and scripts written for
/// them keep their meaning; other counts get equal groups. Anything else is
/// returned as given; encode() writes the completed splits into the header,
/// so decoders never guess them.
ParamSet complete_layer_splits(ParamSet given, int layers);
/// Builds the layout; Error(InvalidArgument) naming the parameter when the
/// layer splits do not fit the bins lists or the layer count, or when
/// parameters contradict each other (float deltas with scale=channel).
Layout make_layout(const Params& p, const kv::CacheShape& shape);
/// The header parameters of a stream with this layout: every parameter for
/// version 3, without the version 3 ones for version 2 (what
/// kvscope::codec::encode() writes); version 4 adds channel_weighting and
/// writes the layout's per-layer bins (the weighted kinds' bins scaled by
/// their bins factors). `rounding` is never written (encoder only);
/// `reconstruction` only when it is used (version 5).
ParamSet header_params(const Params& p, const Layout& layout);
/// Applies calibrated channel weighting to a layout made by make_layout():
/// with channel_weighting=calibrated and a weighting found (the calibration
/// file `profile` names, else the model's calibration in the calibration
/// folder, the first whose section fits the shape), sets channel_scale and
/// weighted_kinds and multiplies each weighted (layer, kind)'s M by its bins
/// factor (rounded, at least 1, bins at most 256). Leaves the layout alone
/// otherwise, or when delta_mode is float or scale is channel.
void apply_channel_weighting(Layout& layout, const Params& p, const kv::CacheInfo& info);
/// The weighting part of apply_channel_weighting() for a given weighting
/// (which must match the layout's layers and channels).
void weight_layout(Layout& layout, const calibration::ChannelWeighting& w);
/// Version 4 codec header tail: u8 weighted kinds, then per layer and
/// weighted kind the channels' f16 scales. Writes nothing for an unweighted
/// layout.
void write_channel_scales(ByteWriter& w, const Layout& layout);
/// Reads that tail into the layout (from a version 4 stream); Error(Format)
/// through `r` on bad kinds or a scale that is not finite and > 0.
void read_channel_scales(ByteReader& r, Layout& layout);
/// make_layout() then apply_channel_weighting(): the layout an encoder uses.
Layout encoding_layout(const Params& p, const kv::KVCache& cache);

/// Integer mode alphabets (version 2): anchors [0, 2M], deltas [0, 4M].
inline int anchor_alphabet(int M) {
  return 2 * M + 1;
}
inline int delta_alphabet(int M) {
  return 4 * M + 1;
}

/// Quantized symbols of one (layer, kind) for one chunk of tokens.
struct ChunkSymbols {
  int begin = 0, count = 0;  ///< the chunk's tokens, sinks included
  int sinks = 0;             ///< its first tokens stored exactly (Layout::sink_tokens)
  /// f16 values of the sink tokens, [head][token][dim].
  std::vector<std::uint16_t> sink_values;
  /// fp16 steps of the coded tokens, Layout::step_count(count - sinks), see Layout::step_index.
  std::vector<std::uint16_t> steps;
  /// Channel-major [channel][coded token], anchor/delta alphabet indices.
  std::vector<std::uint16_t> sym;
  /// Channel-major [channel][coded token], Q + M (every token as an anchor);
  /// empty in float mode, where raw coding does not exist.
  std::vector<std::uint16_t> raw;
  int coded() const { return count - sinks; }
};

/// Adds a chunk's raw symbols (Q + M) to per-channel counts [c*A + s].
void count_raw(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
               std::vector<std::uint64_t>& raw_counts);

/// Whether channel c codes raw symbols (1) or anchor/delta groups (0), for
/// the layout's delta setting: Auto picks the cheaper, counting the ideal
/// code length plus the serialised tables when `tables_shipped`. Always 0
/// in float mode.
std::uint8_t choose_raw(const Layout& layout, std::span<const std::uint64_t> raw,
                        std::span<const std::uint64_t> anchor, std::span<const std::uint64_t> delta,
                        bool tables_shipped);

/// The cache whose values the quantizer codes: `cache` itself, or with
/// key_space=pre_rope and RoPE applied, a copy in `storage` with RoPE removed
/// from the keys (kv::remove_rope, docs/bitstream.md "RoPE").
const kv::KVCache& coding_cache(const kv::KVCache& cache, const Layout& layout, kv::KVCache& storage);

/// Quantizes tokens [begin, begin+count) of (layer, kind) of `cache` (keys
/// in the layout's key space, coding_cache()); sink tokens are kept as f16
/// from `sinks_from` (the cache as given: sinks stay exact), else `cache`; per step
/// slot (Layout::Scale) step = fp16-up(absmax over the slot's values / M);
/// integer mode: Q = round(x / step), anchor tokens (every group_size-th
/// coded token) keep Q, others store Q - predict_from_anchor(); float mode:
/// anchors Q = round(x / step) on anchor_M, others Q = round((x - x'_anchor) /
/// step) on M. Error(InvalidArgument) on NaN or infinite values.
ChunkSymbols quantize_chunk(const kv::KVCache& cache, int layer, kv::Kind kind, int begin, int count,
                            const Layout& layout, const kv::KVCache* sinks_from = nullptr);

/// Adds a chunk's symbols to per-channel counts ([c*A + s] and [c*B + s]).
void count_symbols(const ChunkSymbols& cs, const Layout& layout, int layer, int kind,
                   std::vector<std::uint64_t>& anchor_counts, std::vector<std::uint64_t>& delta_counts);

/// The symbol model of shipped tables for these counts: 16-bit models
/// (FreqModel::from_counts) at table_bits 16; else normalised to
/// 2^table_bits (every seen symbol >= 1) and scaled up to 65536.
FreqModel table_model(std::span<const std::uint64_t> counts, int table_bits);
/// Serialises a table model (its frequencies divided by 2^(16 - table_bits)).
void write_table_model(ByteWriter& w, const FreqModel& m, int table_bits);
/// Reads a table model over `alphabet` symbols written with `table_bits`.
FreqModel read_table_model(ByteReader& r, int alphabet, int table_bits);

/// Writes a chunk's steps (Layout::step_coding) to `w`.
void write_steps(ByteWriter& w, std::span<const std::uint16_t> steps, const Layout& layout);
/// Reads `count` steps as floats; Error(Format) through `r` on a step that is
/// negative, not finite or not a valid coded sequence.
void read_steps(ByteReader& r, std::span<float> steps, const Layout& layout);

/// A parsed profile.
struct Profile {
  Layout layout;                  ///< layers, channels, group size, bins
  std::vector<FreqModel> anchor;  ///< index (layer*2+kind)*channels + channel
  std::vector<FreqModel> delta;   ///< empty for raw channels
  std::vector<std::uint8_t> raw;  ///< 1 = channel codes every token as an anchor
  std::string hash;
};

/// Whether a profile's models fit streams of this layout (same layers,
/// channels, bins, scale, key space and channel scales; integer deltas).
inline bool profile_fits(const Profile& p, const Layout& L) {
  return p.layout.layers == L.layers && p.layout.channels == L.channels && p.layout.bins[0] == L.bins[0] &&
         p.layout.bins[1] == L.bins[1] && p.layout.scale == L.scale && p.layout.key_space == L.key_space &&
         p.layout.weighted_kinds == L.weighted_kinds && p.layout.channel_scale == L.channel_scale &&
         L.delta_mode == Layout::DeltaMode::Integer;
}

/// A calibration file the `profile` parameter names, for a stream with layout
/// L: the profile when its tables were counted for L (profile_fits), nullopt
/// when they were counted at other settings (bins, scale, key space,
/// weighting, or L has float deltas): the stream then ships its own tables,
/// so retuning after calibrating keeps working. Error(InvalidArgument) naming
/// `setting` when the file is of another model shape (layers, channels).
inline std::optional<Profile> file_profile_for(Profile profile, const Layout& L, const std::string& setting) {
  if (profile.layout.layers != L.layers || profile.layout.channels != L.channels)
    throw Error(ErrorCode::InvalidArgument, setting,
                "calibration tables were built for another model shape (" +
                    std::to_string(profile.layout.layers) + " layers, " +
                    std::to_string(profile.layout.channels) + " channels; this cache has " +
                    std::to_string(L.layers) + " and " + std::to_string(L.channels) + ")");
  if (!profile_fits(profile, L)) return std::nullopt;
  return profile;
}

/// Parses and validates profile file bytes (Error(Format|Checksum)).
Profile parse_profile(std::span<const std::uint8_t> bytes, const std::string& label);

/// Loads the profile with this hash from `dir` (Error(Io) naming the file if
/// missing). The last few parsed are kept by (dir, hash) and shared: a file
/// is named by its bytes' hash, so it parses the same every time.
std::shared_ptr<const Profile> load_profile_by_hash(const std::string& hash, const std::string& dir);

/// Loads a profile from a path.
Profile load_profile_file(const std::string& path);

/// The calibration tables of the cache's model that fit `layout`, from the
/// calibration folder (calibration::default_calibration_dir()): the first
/// file, in name order, of the same model (equal model_sha256 when both are
/// known, else equal model_name) with a fitting "cachegen.tables" section.
/// Unreadable files are skipped. nullopt when there is none.
std::optional<Profile> find_model_profile(const kv::CacheInfo& info, const Layout& layout);

/// The channel weighting an encoder uses: with `profile` naming a file, that
/// file's section (nullopt when it has none; Error(Io|Format) when the file
/// cannot be read or parsed); otherwise ("" or "auto") the section of the
/// first calibration file of the cache's model in the calibration folder
/// that has one for the layout's layers and channels (unreadable files are
/// skipped). nullopt when there is none.
std::optional<calibration::ChannelWeighting> find_channel_weighting(const std::string& profile,
                                                                    const kv::CacheInfo& info,
                                                                    const Layout& layout);

/// FNV-1a 64 of bytes, as 16 hex digits.
std::string fnv_hex(std::span<const std::uint8_t> bytes);

}  // namespace kvscope::codec::detail::cachegen
