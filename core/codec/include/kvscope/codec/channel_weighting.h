// SPDX-License-Identifier: Apache-2.0
#pragma once

// cachegen's calibrated channel weighting (docs/bitstream.md, "cachegen
// channel weighting"): a key channel whose queries are large moves attention
// scores more per unit of error, so it gets a finer quantization step. The
// weights come from the model (queries measured on calibration contexts); the
// step scale of every channel and the factor that keeps the key bits where
// the bins put them are computed once here and stored as the calibration
// file's section kChannelWeightingSection.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::codec::calibration {

/// Name of the calibration file section holding a ChannelWeighting.
inline constexpr const char* kChannelWeightingSection = "cachegen.channel-weighting";

/// One model's channel weighting. Index conventions: [layer][channel] for the
/// weights, [layer * 2 + kind][channel] for `scale`, [layer * 2 + kind] for
/// `bins_factor` (kind 0 = keys, 1 = values); channels = kv_heads * head_dim.
struct ChannelWeighting {
  int layers = 0, channels = 0;
  double key_power = 0, value_power = 0;  ///< the exponents the scales were made with
  std::vector<float> key_weight, value_weight;
  /// What a decoder multiplies a dequantized value by (f16 bits, finite and
  /// > 0); the encoder divides by the same value first. 1.0 for a kind whose
  /// power is 0.
  std::vector<std::uint16_t> scale;
  /// Per (layer, kind): the factor on M (bins / 2 - 1) that keeps the bits of
  /// a weighted (layer, kind) where the unweighted bins would put them.
  std::vector<float> bins_factor;

  /// Whether kind (0 keys, 1 values) is weighted at all.
  bool weights_kind(int kind) const { return (kind == 0 ? key_power : value_power) > 0; }
};

/// Builds the weighting from measured weights (ChannelWeights of the model
/// runtime, [layer][channel], >= 0) and calibration caches of that model
/// (keys before or after RoPE; the bins factor is measured on keys before
/// RoPE and skips each cache's first token, an attention sink): per (layer,
/// kind) the gain of channel c is (w_c / geometric mean of w)^(power / 2),
/// weights floored at 1e-4 of their mean, and scale = f16(1 / gain). The bins
/// factor is exp(mean over tokens of log(max_c |x_c gain_c| / max_c |x_c|))
/// divided by the geometric mean of the gains (per token over all channels,
/// as scale=token steps). Error(InvalidArgument) on sizes that do not match
/// the caches' shape, a negative or non-finite weight, powers outside [0, 1],
/// or no cache.
ChannelWeighting build_channel_weighting(std::span<const kv::KVCache> caches,
                                         std::span<const float> key_weight,
                                         std::span<const float> value_weight, double key_power,
                                         double value_power);

/// The section payload (version 1, little-endian; docs/bitstream.md section 4).
std::vector<std::uint8_t> serialize_channel_weighting(const ChannelWeighting& w);

/// Parses and checks a section payload; `label` names the source in errors.
/// Error(Format) on truncation, trailing bytes, an unknown version, sizes
/// over 2^20 layers or channels, a scale that is not finite and > 0, or a
/// bins factor that is not finite and in [1/64, 64].
ChannelWeighting parse_channel_weighting(std::span<const std::uint8_t> bytes, const std::string& label);

}  // namespace kvscope::codec::calibration
