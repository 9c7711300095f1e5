// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

// The first view of a retune, drawn before the exact encode of the whole
// cache finishes (docs/performance.md, "The app"). Two real encodes of part
// of the cache, both labelled as estimates on screen until the exact result
// replaces them:
// - touched streams: when a change moves only some layers' bins (cachegen
//   with one bin count per layer, the default), only those layers are
//   encoded, over every token, and their bytes and stage entropies replace
//   theirs in the last exact result; the other streams did not change;
// - token subset: otherwise, spans of tokens spread over the context are
//   encoded with every layer and scaled up to the whole context.
// Qt-free: plain functions over core/codec, so they can be measured alone.

#include <memory>
#include <optional>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/stage_analysis.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::gui {

/// An encode and, for cachegen, where its bits went stage by stage.
struct StagedEncode {
  std::shared_ptr<const codec::EncodeResult> result;
  std::shared_ptr<const codec::StageAnalysis> stages;  ///< null for other codecs
};

/// Encodes `cache` with `config`; cachegen also gets its stage analysis (one
/// pass gives both). Errors as codec::encode().
StagedEncode encodeWithStages(const kv::KVCache& cache, const codec::CodecConfig& config,
                              const codec::EncodeOptions& options = {});

/// `spans` runs of `span_tokens` tokens spread evenly over `cache` (its start,
/// its end and between), concatenated. Null when the cache has fewer than
/// 4 * spans * span_tokens tokens (small enough to encode whole at once).
std::shared_ptr<const kv::KVCache> tokenSubset(const kv::KVCache& cache, int spans, int span_tokens);

/// Scales the encode of a token subset (`part`) to the whole cache (`full`):
/// payload and steps by the token ratio, tables (one per layer and kind) as
/// they are, the header from `header_bytes` (an exact encode's of the whole
/// cache: it hardly changes with the settings) or, when 0, by the token
/// ratio; entropies are rates and carry over. An estimate (about 1.5% above
/// the exact size on the default context with 4 spans of 64 tokens).
StagedEncode scaleToFull(const StagedEncode& sub, const kv::CacheShape& full, const kv::CacheShape& part,
                         std::size_t header_bytes = 0);

/// The layers whose streams differ between `before` and `after`, both
/// complete settings of `codec` for a cache of `layers` layers: only when the
/// codec is cachegen, the only differences are entries of key_bins or
/// value_bins, and both lists have one entry per layer (no layer splits).
/// nullopt when the change is of another kind (every stream may change).
std::optional<std::vector<int>> layersTouched(const codec::CodecConfig& before,
                                              const codec::CodecConfig& after, int layers);

/// Whether `exact` (a cachegen encode) codes each layer from that layer's
/// values and bins alone, so layers re-encoded on their own can replace
/// theirs: it ships its own symbol tables and has no calibrated channel
/// weighting (both come from a calibration of the whole model).
bool layersCodedAlone(const codec::EncodeResult& exact);

/// The given layers of `cache` as a cache of their own (per-layer RoPE tables
/// and attention windows follow their layers). Preconditions: valid, distinct layers.
kv::KVCache layerSubset(const kv::KVCache& cache, const std::vector<int>& layers);

/// cachegen settings for layerSubset(cache, layers): each per-layer bin list
/// reduced to those layers; the rest as in `config`.
codec::CodecConfig layerSubsetConfig(const codec::CodecConfig& config, const std::vector<int>& layers);

/// The last exact encode of the whole cache (`exact`) with the streams of
/// `layers` replaced by their encode in `sub` (of layerSubset(cache, layers)):
/// their bytes and their stage figures; totals follow. An estimate only in
/// the split of the changed bytes between payload, tables and steps.
StagedEncode patchLayers(const StagedEncode& exact, const StagedEncode& sub, const std::vector<int>& layers);

/// `count` layers spread evenly over `layers` (the first and the last among
/// them); every layer when count >= layers.
std::vector<int> spreadLayers(int layers, int count);

/// Whether layerSubsetConfig() can express `config` for a cache of `layers`
/// layers: cachegen with one bin count per layer and no layer splits.
bool perLayerBins(const codec::CodecConfig& config, int layers);

/// Whether `config` can encode some layers of a cache on their own (the
/// touched and sampled estimates): not when it gives cachegen a calibration
/// file (`profile` naming one, as "Calibrate from this context" selects):
/// its tables fit every layer of the model only, so the part would not encode.
bool encodesLayerSubsets(const codec::CodecConfig& config);

/// A change every stream feels, estimated from a few layers: `now` and
/// `before` are encodes of the same part of the cache (some layers, or a
/// token subset of them) at the new and at the last exact settings. Every
/// layer of the last exact encode `exact` is scaled by how its nearest
/// sampled layer of the same kind changed between them (bytes and stage
/// entropies; the part's own bias cancels); totals follow.
StagedEncode scaleBySampledLayers(const StagedEncode& exact, const StagedEncode& now,
                                  const StagedEncode& before, const std::vector<int>& layers);

}  // namespace kvscope::gui
