// SPDX-License-Identifier: Apache-2.0
// cachegen's parameters: their self-description (ParamSpec, what the GUI and
// CLI build their controls from) and their resolution into a Layout for one
// cache shape (docs/bitstream.md, "cachegen").
#include <algorithm>
#include <cmath>

#include "cachegen_internal.h"
#include "kvscope/common/fp16.h"

namespace kvscope::codec::detail::cachegen {

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// Bins per layer of the default model (SmolLM2-135M, 30 layers): the plan at
// level 2.9 of its layer sensitivity measured at these defaults (keys before
// RoPE, calibrated channel weighting, centroid reconstruction) on the TUNE
// contexts (`kvscope-cli plan --level 2.9`, docs/cachegen-defaults.md "Layer
// plans from the sensitivity at the defaults"): keys 12-64 bins, values 8-32.
// A model of another depth takes the entry at the same relative depth.
constexpr int kPlanLayers = 30;
constexpr int kKeyPlan[kPlanLayers] = {18, 22, 42, 14, 20, 20, 24, 30, 34, 26, 42, 22, 24, 14, 22,
                                       36, 16, 32, 64, 28, 48, 20, 24, 62, 34, 18, 32, 14, 18, 12};
constexpr int kValuePlan[kPlanLayers] = {20, 14, 16, 12, 10, 22, 20, 12, 32, 12, 12, 8, 8, 8, 8,
                                         10, 8,  16, 18, 8,  16, 12, 8,  18, 14, 8,  8, 8, 8, 8};

std::vector<int> stretch(const int (&plan)[kPlanLayers], int layers) {
  std::vector<int> out(static_cast<std::size_t>(layers));
  for (int l = 0; l < layers; ++l)
    out[std::size_t(l)] = plan[layers == 1 ? 0 : (l * (kPlanLayers - 1) + (layers - 1) / 2) / (layers - 1)];
  return out;
}

}  // namespace

ParamSet complete_layer_splits(ParamSet given, int layers) {
  for (const bool keys : {true, false}) {
    const char* bins_name = keys ? "key_bins" : "value_bins";
    const char* splits_name = keys ? "key_layer_splits" : "value_layer_splits";
    const auto bins = given.find(bins_name);
    if (bins == given.end() || given.count(splits_name)) continue;
    const int groups = 1 + int(std::count(bins->second.begin(), bins->second.end(), ','));
    if (groups < 2 || groups >= layers) continue;  // one group, or one entry per layer, or invalid
    std::vector<int> splits;
    if (keys && groups == 3) {  // layout version 2's default key groups: thirds
      splits = {std::max(1, layers / 3), std::max(2, 2 * layers / 3)};
    } else if (!keys && groups == 2) {  // its default value groups: the first (L + 8) / 16 layers finer
      splits = {std::max(1, (layers + 8) / 16)};
    } else {
      for (int g = 1; g < groups; ++g) splits.push_back((2 * g * layers + groups) / (2 * groups));
    }
    given[splits_name] = join(splits);
  }
  return given;
}

std::vector<ParamSpec> param_specs(const kv::CacheShape* shape) {
  const int L = shape && shape->layers > 0 ? shape->layers : 32;
  // One bin count per layer (no splits); a single layer is one group.
  const std::vector<int> kbins = stretch(kKeyPlan, L), vbins = stretch(kValuePlan, L);
  // RoPE rotates pairs of dimensions: a head of odd size cannot have had it.
  const bool even_dim = !shape || shape->head_dim % 2 == 0;
  using T = ParamSpec::Type;
  return {
      chunk_tokens_spec(1024),
      {"group_size",
       T::Int,
       "10",
       1,
       1024,
       {},
       "tokens per anchor group: the first is coded on its own, the rest as deltas to it"},
      {"key_bins",
       T::IntList,
       join(kbins),
       4,
       256,
       {},
       "quantization bins of keys per layer group (shallow to deep); one per layer with no splits"},
      {"key_layer_splits",
       T::IntList,
       "",
       1,
       4095,
       {},
       "first layer of each key layer group after the first (one fewer than key_bins; empty when key_bins "
       "has one entry per layer; left out with 3 group bins: thirds, other counts: equal groups)"},
      {"value_bins",
       T::IntList,
       join(vbins),
       4,
       256,
       {},
       "quantization bins of values per layer group (shallow to deep); one per layer with no splits"},
      {"value_layer_splits",
       T::IntList,
       "",
       1,
       4095,
       {},
       "first layer of each value layer group after the first (one fewer than value_bins; empty when "
       "value_bins has one entry per layer; left out with 2 group bins: the first (layers + 8) / 16 layers, "
       "other counts: equal groups)"},
      {"delta",
       T::Choice,
       "auto",
       0,
       0,
       {"auto", "always", "never"},
       "anchor/delta coding per channel: always (the paper), never (raw quantized values), auto (the cheaper "
       "per channel); integer deltas only"},
      {"delta_mode",
       T::Choice,
       "integer",
       0,
       0,
       {"integer", "float"},
       "integer: a delta token codes its Q minus the anchor's Q in its step (lossless, quality as raw); "
       "float: the paper's change-based coding, anchors on anchor_bins, deltas = value minus the "
       "reconstructed anchor quantized on the layer's bins"},
      {"anchor_bins", T::Int, "256", 4, 256, {}, "delta_mode=float only: quantization bins of anchor tokens"},
      {"scale",
       T::Choice,
       "token",
       0,
       0,
       {"token", "head", "channel"},
       "what one quantization step (absmax / M) covers: one token over all channels of the layer (token), "
       "one token in one KV head (head), or one channel over the whole chunk (channel)"},
      {"sinks",
       T::Int,
       "1",
       0,
       65536,
       {},
       "attention sinks: the first N tokens of the cache are stored exactly (fp16), not quantized"},
      {"key_space",
       T::Choice,
       even_dim ? "pre_rope" : "post_rope",
       0,
       0,
       {"post_rope", "pre_rope"},
       "keys coded as the cache holds them (post_rope) or with RoPE removed first and re-applied at each "
       "token's position after decoding (pre_rope: mostly a constant offset per channel, cheaper to code)"},
      {"step_coding",
       T::Choice,
       "coded",
       0,
       0,
       {"fp16", "coded"},
       "how quantization steps are stored: fp16 values, or the same values range coded (lossless, "
       "smaller)"},
      {"table_bits",
       T::Int,
       "10",
       10,
       16,
       {},
       "precision of shipped symbol tables: frequencies out of 2^table_bits (16 = full; fewer bits = "
       "smaller tables, slightly costlier symbols)"},
      {"rounding",
       T::Float,
       "0.5",
       0.25,
       0.5,
       {},
       "dead-zone rounding (encoder only): a value moves one step away from zero once it passes this "
       "fraction of a step; 0.5 rounds to nearest, lower values send more zeros (fewer bits, a little more "
       "error)"},
      {"reconstruction",
       T::Float,
       "0.75",
       0.0,
       1.0,
       {},
       "where in its bin a value is decoded: 0 = the bin's middle; above 0 = moved toward the likelier "
       "neighbouring bin by this fraction of the centroid offset the channel's symbol table implies (at most "
       "a sixth of a step; no bits spent; layout version 5; integer delta mode)"},
      {"channel_weighting",
       T::Choice,
       "calibrated",
       0,
       0,
       {"off", "calibrated"},
       "calibrated: when the model's calibration has channel weights (`kvscope-cli calibrate --context`), "
       "key channels that queries read strongly get finer steps and the others coarser, at about the same "
       "key bits (layout version 4; bins scaled by the calibration's factors); off: one step for every "
       "channel"},
      {"profile",
       T::Text,
       "auto",
       0,
       0,
       {},
       "symbol tables: empty = shipped with the object; a calibration file (.kvsprof) = its tables (shipped "
       "ones instead when the file's were counted at other bins, scale or key space; its channel weighting "
       "applies either way); auto = the model's calibration from the calibration folder when it codes this "
       "cache in fewer bits than shipped tables"},
  };
}

Layout make_layout(const Params& p, const kv::CacheShape& shape) {
  Layout L;
  L.layers = shape.layers;
  L.channels = shape.channels();
  L.group_size = p.get_int("group_size");
  L.chunk_tokens = p.get_int("chunk_tokens");
  L.heads = shape.kv_heads;
  L.head_dim = shape.head_dim;
  const std::string scale = p.get("scale");
  L.scale = scale == "channel" ? Layout::Scale::Channel
            : scale == "head"  ? Layout::Scale::Head
                               : Layout::Scale::Token;
  const std::string delta = p.get("delta");
  L.delta = delta == "always"  ? Layout::Delta::Always
            : delta == "never" ? Layout::Delta::Never
                               : Layout::Delta::Auto;
  auto list = [&](const std::string& name) {
    return p.get(name).empty() ? std::vector<int>{} : p.get_int_list(name);
  };
  L.bins[0] = bins_per_layer("cachegen", list("key_bins"), list("key_layer_splits"), shape.layers, "key_bins",
                             "key_layer_splits");
  L.bins[1] = bins_per_layer("cachegen", list("value_bins"), list("value_layer_splits"), shape.layers,
                             "value_bins", "value_layer_splits");
  L.sinks = p.get_int("sinks");
  L.delta_mode = p.get("delta_mode") == "float" ? Layout::DeltaMode::Float : Layout::DeltaMode::Integer;
  L.anchor_bins = p.get_int("anchor_bins");
  L.step_coding = p.get("step_coding") == "coded" ? Layout::StepCoding::Coded : Layout::StepCoding::Fp16;
  L.table_bits = p.get_int("table_bits");
  L.rounding = float(p.get_float("rounding"));
  L.reconstruction = L.delta_mode == Layout::DeltaMode::Integer ? float(p.get_float("reconstruction")) : 0.0f;
  L.key_space = p.get("key_space") == "pre_rope" ? Layout::KeySpace::PreRope : Layout::KeySpace::PostRope;
  if (L.key_space == Layout::KeySpace::PreRope && shape.head_dim % 2 != 0)
    throw Error(ErrorCode::InvalidArgument,
                "cachegen: key_space=pre_rope needs an even head_dim (RoPE rotates pairs of dimensions)");
  if (L.delta_mode == Layout::DeltaMode::Float && L.scale == Layout::Scale::Channel)
    throw Error(ErrorCode::InvalidArgument,
                "cachegen: delta_mode=float needs scale=token or scale=head (a step per token)");
  return L;
}

ParamSet header_params(const Params& p, const Layout& layout) {
  ParamSet out = p.values();
  out.erase("rounding");  // how the encoder rounded; decoders do not need it
  if (layout.reconstruction == 0.0f) out.erase("reconstruction");  // versions 2-4 decode to midpoints
  if (layout.version() < kLayoutVersion)  // versions 3 to 5 carry every version 3 parameter
    for (const auto& v3 : kV3Params) out.erase(v3.name);
  if (!layout.weighted()) {
    out.erase("channel_weighting");
    return out;
  }
  // The bins the stream was coded with: the weighted kinds' were scaled.
  out["channel_weighting"] = "calibrated";
  out["key_bins"] = join(layout.bins[0]);
  out["value_bins"] = join(layout.bins[1]);
  out["key_layer_splits"] = "";
  out["value_layer_splits"] = "";
  return out;
}

int Layout::version() const {
  return reconstruction > 0.0f ? kLayoutVersionCentroid
         : weighted()          ? kLayoutVersionWeighted
         : needs_v3()          ? kLayoutVersion
                               : kLayoutVersionPlain;
}

void weight_layout(Layout& L, const calibration::ChannelWeighting& w) {
  const int C = L.channels;
  L.channel_scale.assign(std::size_t(L.layers) * 2 * C, 1.0f);
  L.weighted_kinds = 0;
  for (int k = 0; k < 2; ++k) {
    if (!w.weights_kind(k)) continue;
    L.weighted_kinds |= std::uint8_t(1 << k);
    for (int l = 0; l < L.layers; ++l) {
      const std::size_t lk = std::size_t(l) * 2 + k;
      for (int c = 0; c < C; ++c) L.channel_scale[lk * C + c] = half_to_float(w.scale[lk * C + c]);
      const int M = L.M(l, k);
      const int scaled = std::max(1, int(std::lround(double(M) * w.bins_factor[lk])));
      L.bins[k][std::size_t(l)] = std::min(2 * scaled + 2, 256);
    }
  }
  if (!L.weighted()) L.channel_scale.clear();
}

void apply_channel_weighting(Layout& L, const Params& p, const kv::CacheInfo& info) {
  if (p.get("channel_weighting") != "calibrated" || L.delta_mode == Layout::DeltaMode::Float ||
      L.scale == Layout::Scale::Channel)
    return;
  if (const auto w = find_channel_weighting(p.get("profile"), info, L)) weight_layout(L, *w);
}

void write_channel_scales(ByteWriter& w, const Layout& L) {
  if (!L.weighted()) return;
  w.u8(L.weighted_kinds);
  for (int l = 0; l < L.layers; ++l)
    for (int k = 0; k < 2; ++k)
      if (L.weighted_kinds >> k & 1)
        for (int c = 0; c < L.channels; ++c)
          w.u16(float_to_half(L.channel_scale[(std::size_t(l) * 2 + k) * L.channels + c]));
}

void read_channel_scales(ByteReader& r, Layout& L) {
  L.weighted_kinds = r.u8();
  if (L.weighted_kinds == 0 || L.weighted_kinds > 3) r.fail("bad weighted kinds in the channel scales");
  // The scales must be there before anything is allocated for them (a
  // header may declare any shape).
  const std::uint64_t kinds = L.weighted_kinds == 3 ? 2 : 1;
  if (kinds * std::uint64_t(L.layers) * std::uint64_t(L.channels) * 2 > r.remaining())
    r.fail("the channel scales are truncated");
  L.channel_scale.assign(std::size_t(L.layers) * 2 * L.channels, 1.0f);
  for (int l = 0; l < L.layers; ++l)
    for (int k = 0; k < 2; ++k)
      if (L.weighted_kinds >> k & 1)
        for (int c = 0; c < L.channels; ++c) {
          const float v = half_to_float(r.u16());
          if (!std::isfinite(v) || !(v > 0)) r.fail("a channel scale is not finite and > 0");
          L.channel_scale[(std::size_t(l) * 2 + k) * L.channels + c] = v;
        }
}

Layout encoding_layout(const Params& p, const kv::KVCache& cache) {
  Layout L = make_layout(p, cache.shape());
  apply_channel_weighting(L, p, cache.info);
  return L;
}

const char* to_string(Layout::Scale s) {
  switch (s) {
    case Layout::Scale::Token:
      return "token";
    case Layout::Scale::Head:
      return "head";
    case Layout::Scale::Channel:
      return "channel";
  }
  return "?";
}

}  // namespace kvscope::codec::detail::cachegen
