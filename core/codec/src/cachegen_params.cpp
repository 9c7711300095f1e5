// cachegen's parameters: their self-description (ParamSpec, what the GUI and
// CLI build their controls from) and their resolution into a Layout for one
// cache shape (docs/bitstream.md, "cachegen").
#include <algorithm>

#include "cachegen_internal.h"

namespace kvscope::codec::detail::cachegen {

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

std::vector<ParamSpec> param_specs(const kv::CacheShape* shape) {
  const int L = shape && shape->layers > 0 ? shape->layers : 32;
  std::vector<int> ksplits, vsplits;
  // Defaults measured on the default model with per-token steps
  // (docs/cachegen-defaults.md): values follow the paper (finer in the first
  // layers), but keys of the deeper two thirds need the finer bins there; the
  // paper's 32/16/16 for keys cost more bits for a worse continuation.
  std::vector<int> kbins = {16, 24, 24}, vbins = {16, 10};
  if (L >= 3) {
    ksplits = {std::max(1, L / 3), std::max(2, 2 * L / 3)};
  } else {
    kbins = {24};
  }
  if (L >= 2) {
    vsplits = {std::max(1, (L + 8) / 16)};
  } else {
    vbins = {16};
  }
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
       ksplits.empty() ? "" : join(ksplits),
       1,
       4095,
       {},
       "first layer of each key layer group after the first (one fewer than key_bins; empty when key_bins "
       "has one entry per layer)"},
      {"value_bins",
       T::IntList,
       join(vbins),
       4,
       256,
       {},
       "quantization bins of values per layer group (shallow to deep); one per layer with no splits"},
      {"value_layer_splits",
       T::IntList,
       vsplits.empty() ? "" : join(vsplits),
       1,
       4095,
       {},
       "first layer of each value layer group after the first (one fewer than value_bins; empty when "
       "value_bins has one entry per layer)"},
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
       "0",
       0,
       65536,
       {},
       "attention sinks: the first N tokens of the cache are stored exactly (fp16), not quantized"},
      {"step_coding",
       T::Choice,
       "fp16",
       0,
       0,
       {"fp16", "coded"},
       "how quantization steps are stored: fp16 values, or the same values range coded (lossless, "
       "smaller)"},
      {"table_bits",
       T::Int,
       "16",
       10,
       16,
       {},
       "precision of shipped symbol tables: frequencies out of 2^table_bits (16 = full; fewer bits = "
       "smaller tables, slightly costlier symbols)"},
      {"profile",
       T::Text,
       "",
       0,
       0,
       {},
       "calibration file (.kvsprof) giving per-model symbol tables; empty = ship tables with the "
       "object"},
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
  if (L.delta_mode == Layout::DeltaMode::Float && L.scale == Layout::Scale::Channel)
    throw Error(ErrorCode::InvalidArgument,
                "cachegen: delta_mode=float needs scale=token or scale=head (a step per token)");
  return L;
}

ParamSet header_params(const Params& p, const Layout& layout) {
  ParamSet out = p.values();
  if (!layout.needs_v3())
    for (const auto& v3 : kV3Params) out.erase(v3.name);
  return out;
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
