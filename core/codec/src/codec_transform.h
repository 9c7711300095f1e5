// SPDX-License-Identifier: Apache-2.0
#pragma once

// Pieces of the `transform` codec shared by its encoder, decoder, planner
// and calibration loader (docs/bitstream.md, "transform").

#include <memory>
#include <string>
#include <vector>

#include "codec_base.h"
#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/codec/transform_plan.h"

namespace kvscope::codec::detail::transform {

using codec::transform::BasisSet;
using codec::transform::Calibration;
using codec::transform::GroupBasis;
using codec::transform::Grouping;
using codec::transform::TransformPlan;

inline constexpr const char* kName = "transform";
/// Layout version 1: one quantization step per group and chunk. Version 2
/// adds a step scale to every coded component (query weighting). Version 3
/// adds a gain per coded token to value chunks (value_gain).
inline constexpr std::uint16_t kLayoutPlain = 1, kLayoutWeighted = 2, kLayoutGained = 3;

/// Resolved parameters for one cache shape.
struct Settings {
  /// Where the basis comes from: Auto = the calibration when one is given,
  /// else this cache (shipped).
  enum class Source { Auto, Calibration, Cache } source = Source::Auto;
  Grouping grouping = Grouping::Layer;
  int chunk_tokens = 1024;
  int sink_tokens = 4;
  int recent_tokens = 0;
  bool remove_rope = true;  ///< key_rope = remove (requested)
  /// Keys are coded before RoPE and the decoder re-applies it (resolved:
  /// remove_rope, the cache stores keys after RoPE and knows its frequencies).
  bool rope_coded = false;
  double bits = 2.0;  ///< budget, bits per element
  double key_weight = 0.2;
  double deadzone = 0.0;  ///< encoder's rounding dead zone (quantize_offset)
  /// Exponents on the calibration's measured channel weights (keys, values)
  /// in the bit allocation; 0 = that kind unweighted.
  double key_weighting = 0.0, value_weighting = 0.0;
  bool weighted() const { return key_weighting > 0 || value_weighting > 0; }
  /// Exponent of the per-token gain of values (0 = none): each coded value
  /// token's coefficients are divided by (its energy / the mean)^(value_gain / 2).
  double value_gain = 0.0;
  /// The layout version a stream with these settings is written as.
  std::uint16_t layout_version() const {
    return value_gain > 0 ? kLayoutGained : weighted() ? kLayoutWeighted : kLayoutPlain;
  }
  /// Per (layer, kind), index layer*2 + kind: importance of relative error
  /// (empty = uniform).
  std::vector<double> layer_weights;
  std::string calibration;  ///< file path (Source::Calibration)
  int layers = 0, kv_heads = 0, tokens = 0, head_dim = 0;
  int groups() const { return grouping == Grouping::Layer ? 1 : kv_heads; }
  int group_dim() const { return grouping == Grouping::Layer ? kv_heads * head_dim : head_dim; }
  /// Tokens stored exactly (fp16): the first sink_tokens and the last recent_tokens.
  bool exact(int t) const { return t < sink_tokens || t >= tokens - recent_tokens; }
};

std::vector<ParamSpec> param_specs(const kv::CacheShape* shape);
/// The parameters with the query weighting switched off (key_weighting and
/// value_weighting 0) when no calibration file with channel weights is
/// given, so that a stream's header says what it did. A calibration that
/// cannot be read is left for the encoder to report.
ParamSet resolve_weighting(ParamSet params);
Settings make_settings(const Params& p, const kv::CacheShape& shape);

/// A calibration file's transform bases and channel weighting, and the hash
/// streams reference it by.
struct LoadedCalibration {
  std::string hash;                                                ///< 16 lowercase hex digits
  std::string path;                                                ///< where it was read (for errors)
  std::shared_ptr<const Calibration> calibration;                  ///< null: no transform section
  std::shared_ptr<const calibration::ChannelWeighting> weighting;  ///< null: no weighting section
  /// The transform bases; Error(InvalidArgument) saying how to make them when absent.
  const Calibration& bases() const;
};
/// Reads the "transform.basis" and channel weighting sections of a
/// calibration file (either may be absent). Error(Io) when unreadable,
/// Error(Format | Checksum) when malformed.
LoadedCalibration load_calibration_file(const std::string& path);
/// The calibration `hash` in `dir` (empty: the default calibration folder).
/// Error(Io) naming the hash and folder when absent.
LoadedCalibration load_calibration_by_hash(const std::string& hash, const std::string& dir);

/// Checks that a basis set fits the cache shape; Error(InvalidArgument) (or
/// Format for streams: `stream` true) otherwise.
void check_basis_fits(const BasisSet& set, const Settings& s, const std::string& what, bool stream);

/// One (layer, kind, group) as the encoder codes it.
struct GroupCode {
  double step = 0;                     ///< quantization step of every coded component
  std::vector<int> components;         ///< coded components, ascending
  std::vector<double> cache_variance;  ///< per component, this cache's (sample) second moment
  std::vector<double> bits_per_token;  ///< per component, estimated code length (0 when not coded)
  /// Per component: the f16 step scale (layout version 2, query weighting;
  /// empty when unweighted). The component's step is float(step) * scale.
  std::vector<std::uint16_t> scale;
  /// Component j's quantization step, as the decoder computes it.
  float component_step(int j) const;
};

/// The encoder's decisions for a whole cache (rate control on a token sample).
struct Decisions {
  double water_level = 0;         ///< theta: the distortion per coded component of weight 1
  std::vector<GroupCode> groups;  ///< index (layer*2 + kind)*groups + group
  TransformPlan::Breakdown estimate;
};

/// The basis each group is coded with (calibration or this cache's own).
struct Bases {
  bool shipped = false;  ///< this cache's own basis, shipped in Table sections
  const BasisSet* set = nullptr;
  BasisSet own;  ///< Source::Cache: vectors rounded to fp16 (what the stream ships)
  LoadedCalibration calibration;
  /// The channel weights the allocation uses (Settings::weighted()), from
  /// the calibration file.
  std::shared_ptr<const calibration::ChannelWeighting> weighting;
};

/// The cache the transform sees: keys before RoPE when settings say so
/// (then sets s.rope_coded). Returns `cache` itself or a converted copy held
/// in `storage`.
const kv::KVCache& transform_input(const kv::KVCache& cache, Settings& s, kv::KVCache& storage);

/// The bases, and the channel weighting when s.weighted() (Error(InvalidArgument)
/// when the calibration has none or of another shape).
Bases make_bases(const kv::KVCache& input, const Settings& s, int threads);
/// `header_bytes`: the container header's size (container_header_bytes).
Decisions decide(const kv::KVCache& input, const Settings& s, const Bases& bases, std::size_t header_bytes,
                 int threads);

/// Bytes of the container prefix and header body a stream of `cache` with
/// these parameters has (docs/bitstream.md 1.1), sections excluded.
std::size_t container_header_bytes(const Params& p, const kv::KVCache& cache, bool shipped);

/// Gathers token t of `group` of one (layer, kind) tensor into x (n floats).
void gather_token(const float* tensor, const Settings& s, int group, int t, float* x);

/// value_gain: the gain of each of T centered tokens x ([token][n]),
/// (|x_t|^2 / mean_t |x_t|^2)^(alpha / 2) clamped to [2^-10, 2^10] and
/// rounded to f16 (what the stream carries); all 1 when every token is zero.
/// Dividing a token's coefficients by its gain codes small tokens with
/// finer steps (docs/bitstream.md "transform", version 3).
std::vector<std::uint16_t> token_gains(const float* x, int T, int n, double alpha);

/// Divides each of the gains.size() tokens' m coefficients in y ([token][m])
/// by its f16 gain (token_gains()): what the encoder codes.
void divide_by_gains(const std::vector<std::uint16_t>& gains, int m, float* y);

}  // namespace kvscope::codec::detail::transform
