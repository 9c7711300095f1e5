// SPDX-License-Identifier: GPL-3.0-or-later
#include "retune_estimate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "kvscope/codec/bitstream.h"
#include "kvscope/common/error.h"

namespace kvscope::gui {

namespace {

std::vector<std::string> splitList(const std::string& s) {
  std::vector<std::string> out;
  std::size_t a = 0;
  while (a <= s.size() && !s.empty()) {
    std::size_t b = s.find(',', a);
    if (b == std::string::npos) b = s.size();
    out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

std::string param(const codec::ParamSet& p, const char* name) {
  const auto it = p.find(name);
  return it == p.end() ? std::string() : it->second;
}

// The exact encode `e`'s sizes moved by `change` bytes, shared between
// payload, tables and steps as the sampled encode `s` splits its own.
void spreadChange(codec::SizeReport& o, const codec::SizeReport& e, const codec::SizeReport& s,
                  double change) {
  const double body = double(s.payload_bytes + s.table_bytes + s.step_bytes);
  auto share = [&](std::size_t part) { return body > 0 ? change * double(part) / body : 0.0; };
  auto add = [](std::size_t v, double d) { return std::size_t(std::max(0.0, std::round(double(v) + d))); };
  o.payload_bytes = add(e.payload_bytes, share(s.payload_bytes));
  o.table_bytes = add(e.table_bytes, share(s.table_bytes));
  o.step_bytes = add(e.step_bytes, share(s.step_bytes));
  o.encoded_bytes = add(e.encoded_bytes, change);
}

}  // namespace

StagedEncode encodeWithStages(const kv::KVCache& cache, const codec::CodecConfig& config,
                              const codec::EncodeOptions& options) {
  StagedEncode e;
  if (config.codec == "cachegen") {
    auto analysis =
        std::make_shared<codec::StageAnalysis>(codec::analyze_stages(cache, config.params, options));
    e.result = std::make_shared<const codec::EncodeResult>(std::move(analysis->encoded));
    analysis->encoded = {};
    e.stages = std::move(analysis);
  } else {
    e.result = std::make_shared<const codec::EncodeResult>(codec::encode(cache, config, options));
  }
  return e;
}

std::shared_ptr<const kv::KVCache> tokenSubset(const kv::KVCache& cache, int spans, int span_tokens) {
  const int T = cache.shape().tokens;
  if (spans < 1 || span_tokens < 1 || T < 4 * spans * span_tokens) return nullptr;
  std::vector<kv::KVCache> parts;
  for (int i = 0; i < spans; ++i) {
    const int begin = spans == 1 ? 0 : int(std::llround(double(T - span_tokens) * i / double(spans - 1)));
    kv::KVCache part = cache.slice_tokens(begin, begin + span_tokens);
    // Keys coded before RoPE are un-rotated at each token's own position.
    if (part.info.positions.empty()) {
      part.info.positions.resize(std::size_t(span_tokens));
      std::iota(part.info.positions.begin(), part.info.positions.end(), begin);
    }
    parts.push_back(std::move(part));
  }
  return std::make_shared<const kv::KVCache>(kv::KVCache::concat_tokens(parts));
}

StagedEncode scaleToFull(const StagedEncode& sub, const kv::CacheShape& full, const kv::CacheShape& part,
                         std::size_t header_bytes) {
  const double ratio = double(full.tokens) / double(std::max(1, part.tokens));
  auto r = std::make_shared<codec::EncodeResult>();
  const codec::SizeReport& s = sub.result->size;
  codec::SizeReport& o = r->size;
  o.original_bytes = full.fp16_bytes();
  o.elements = full.elements();
  // Tables come once per (layer, kind) whatever the chunk count
  // (docs/bitstream.md, "Section order"); they were scaled by the chunk
  // count, which made the estimate of the default context 20% high. The
  // header holds per-token ids and positions besides the section headers.
  o.header_bytes = header_bytes > 0 ? header_bytes : std::size_t(double(s.header_bytes) * ratio);
  o.payload_bytes = std::size_t(double(s.payload_bytes) * ratio);
  o.step_bytes = std::size_t(double(s.step_bytes) * ratio);
  o.table_bytes = s.table_bytes;
  o.encoded_bytes = o.header_bytes + o.payload_bytes + o.step_bytes + o.table_bytes;
  o.entropy_bits_per_element = s.entropy_bits_per_element;
  const double grow = s.encoded_bytes ? double(o.encoded_bytes) / double(s.encoded_bytes) : ratio;
  for (std::size_t b : s.layer_bytes) o.layer_bytes.push_back(std::size_t(double(b) * grow));
  r->seconds = sub.result->seconds;
  StagedEncode e;
  e.result = std::move(r);
  if (sub.stages) {
    auto st = std::make_shared<codec::StageAnalysis>(*sub.stages);
    st->coded.overall = o.bits_per_element();
    for (std::size_t i = 0; i < st->coded.per_layer.size() && i < o.layer_bytes.size(); ++i)
      st->coded.per_layer[i] =
          8.0 * double(o.layer_bytes[i]) / double(std::max<std::size_t>(1, full.tensor_elements()));
    st->coded_payload = 8.0 * double(o.payload_bytes) / double(std::max<std::size_t>(1, o.elements));
    e.stages = std::move(st);
  }
  return e;
}

std::optional<std::vector<int>> layersTouched(const codec::CodecConfig& before,
                                              const codec::CodecConfig& after, int layers) {
  if (before.codec != "cachegen" || after.codec != "cachegen" || layers < 1) return std::nullopt;
  std::vector<int> touched;
  std::vector<std::string> names;
  for (const auto& [name, value] : after.params) {
    const std::string was = param(before.params, name.c_str());
    if (was != value) names.push_back(name);
  }
  for (const auto& [name, value] : before.params)
    if (!after.params.count(name)) names.push_back(name);
  for (const std::string& name : names) {
    if (name != "key_bins" && name != "value_bins") return std::nullopt;
    const char* splits = name == "key_bins" ? "key_layer_splits" : "value_layer_splits";
    if (!param(before.params, splits).empty() || !param(after.params, splits).empty()) return std::nullopt;
    const auto a = splitList(param(before.params, name.c_str())),
               b = splitList(param(after.params, name.c_str()));
    if (int(a.size()) != layers || int(b.size()) != layers) return std::nullopt;
    for (int l = 0; l < layers; ++l)
      if (a[std::size_t(l)] != b[std::size_t(l)]) touched.push_back(l);
  }
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  return touched;
}

bool layersCodedAlone(const codec::EncodeResult& exact) {
  if (exact.size.table_bytes == 0 || exact.bytes.empty()) return false;
  try {
    const codec::StreamInfo info = codec::inspect_stream(exact.bytes, false);
    return info.codec == "cachegen" && !info.params.count("channel_weighting");
  } catch (const Error&) {
    return false;
  }
}

kv::KVCache layerSubset(const kv::KVCache& cache, const std::vector<int>& layers) {
  kv::CacheShape s = cache.shape();
  s.layers = int(layers.size());
  kv::KVCache out(s);
  out.info = cache.info;
  out.info.rope_inv_freq.clear();
  out.info.layer_window.clear();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const int l = layers[i];
    for (kv::Kind k : kv::kKinds) {
      const auto src = cache.tensor(l, k);
      std::copy(src.begin(), src.end(), out.tensor(int(i), k).begin());
    }
    if (cache.info.rope_inv_freq.size() == std::size_t(cache.shape().layers))
      out.info.rope_inv_freq.push_back(cache.info.rope_inv_freq[std::size_t(l)]);
    if (cache.info.layer_window.size() == std::size_t(cache.shape().layers))
      out.info.layer_window.push_back(cache.info.layer_window[std::size_t(l)]);
  }
  return out;
}

codec::CodecConfig layerSubsetConfig(const codec::CodecConfig& config, const std::vector<int>& layers) {
  codec::CodecConfig c = config;
  for (const char* name : {"key_bins", "value_bins"}) {
    const auto all = splitList(param(config.params, name));
    std::string picked;
    for (int l : layers) {
      if (std::size_t(l) >= all.size()) break;
      picked += (picked.empty() ? "" : ",") + all[std::size_t(l)];
    }
    if (!picked.empty()) c.params[name] = picked;
  }
  return c;
}

StagedEncode patchLayers(const StagedEncode& exact, const StagedEncode& sub, const std::vector<int>& layers) {
  auto r = std::make_shared<codec::EncodeResult>();
  const codec::SizeReport& e = exact.result->size;
  const codec::SizeReport& s = sub.result->size;
  codec::SizeReport& o = r->size;
  o = e;
  // The changed streams' bytes, split between payload, tables and steps as
  // in the part that was encoded (headers do not change with bins).
  double change = 0;
  for (std::size_t i = 0; i < layers.size(); ++i)
    for (std::size_t k = 0; k < 2; ++k) {
      const std::size_t to = std::size_t(layers[i]) * 2 + k, from = i * 2 + k;
      if (to >= o.layer_bytes.size() || from >= s.layer_bytes.size()) continue;
      change += double(s.layer_bytes[from]) - double(o.layer_bytes[to]);
      o.layer_bytes[to] = s.layer_bytes[from];
    }
  spreadChange(o, e, s, change);
  r->seconds = sub.result->seconds;
  StagedEncode out;
  out.result = std::move(r);
  if (exact.stages && sub.stages) {
    auto st = std::make_shared<codec::StageAnalysis>(*exact.stages);
    const std::size_t LK = st->fp16.per_layer.size();
    for (codec::StageBits codec::StageAnalysis::*stage :
         {&codec::StageAnalysis::fp16, &codec::StageAnalysis::quantized_fixed,
          &codec::StageAnalysis::raw_entropy, &codec::StageAnalysis::delta_entropy,
          &codec::StageAnalysis::coded}) {
      codec::StageBits& to = (*st).*stage;
      const codec::StageBits& from = (*sub.stages).*stage;
      for (std::size_t i = 0; i < layers.size(); ++i)
        for (std::size_t k = 0; k < 2; ++k) {
          const std::size_t t = std::size_t(layers[i]) * 2 + k, f = i * 2 + k;
          if (t < to.per_layer.size() && f < from.per_layer.size()) to.per_layer[t] = from.per_layer[f];
        }
      // Every stream has as many elements: the overall figure is their mean.
      if (LK > 0 && stage != &codec::StageAnalysis::coded)
        to.overall = std::accumulate(to.per_layer.begin(), to.per_layer.end(), 0.0) / double(LK);
    }
    st->coded.overall = o.bits_per_element();
    st->coded_payload = o.elements ? 8.0 * double(o.payload_bytes) / double(o.elements) : 0;
    out.stages = std::move(st);
  }
  return out;
}

std::vector<int> spreadLayers(int layers, int count) {
  std::vector<int> out;
  if (layers <= 0) return out;
  if (count >= layers || count < 2) {
    for (int l = 0; l < layers && (count >= layers || l < std::max(count, 1)); ++l) out.push_back(l);
    return out;
  }
  for (int i = 0; i < count; ++i) out.push_back(int(std::lround(double(layers - 1) * i / double(count - 1))));
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool perLayerBins(const codec::CodecConfig& config, int layers) {
  if (config.codec != "cachegen") return false;
  for (const char* name : {"key_bins", "value_bins"})
    if (int(splitList(param(config.params, name)).size()) != layers) return false;
  return param(config.params, "key_layer_splits").empty() &&
         param(config.params, "value_layer_splits").empty();
}

bool encodesLayerSubsets(const codec::CodecConfig& config) {
  if (config.codec != "cachegen") return true;
  const std::string profile = param(config.params, "profile");
  return profile.empty() || profile == "auto";
}

StagedEncode scaleBySampledLayers(const StagedEncode& exact, const StagedEncode& now,
                                  const StagedEncode& before, const std::vector<int>& layers) {
  const codec::SizeReport& e = exact.result->size;
  const codec::SizeReport& s = now.result->size;
  const codec::SizeReport& b = before.result->size;
  const std::size_t LK = e.layer_bytes.size();
  // The sampled layer nearest to each layer.
  auto nearest = [&](std::size_t layer) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < layers.size(); ++i)
      if (std::abs(layers[i] - int(layer)) < std::abs(layers[best] - int(layer))) best = i;
    return best;
  };
  auto ratio = [](double now, double before) { return before > 0 ? now / before : 1.0; };
  auto r = std::make_shared<codec::EncodeResult>();
  codec::SizeReport& o = r->size;
  o = e;
  double change = 0;
  for (std::size_t lk = 0; lk < LK; ++lk) {
    const std::size_t from = nearest(lk / 2) * 2 + lk % 2;
    if (from >= s.layer_bytes.size() || from >= b.layer_bytes.size()) continue;
    const double scaled =
        double(e.layer_bytes[lk]) * ratio(double(s.layer_bytes[from]), double(b.layer_bytes[from]));
    change += scaled - double(e.layer_bytes[lk]);
    o.layer_bytes[lk] = std::size_t(std::max(0.0, std::round(scaled)));
  }
  spreadChange(o, e, s, change);
  r->seconds = now.result->seconds;
  StagedEncode out;
  out.result = std::move(r);
  if (exact.stages && now.stages && before.stages) {
    auto st = std::make_shared<codec::StageAnalysis>(*exact.stages);
    for (codec::StageBits codec::StageAnalysis::*stage :
         {&codec::StageAnalysis::quantized_fixed, &codec::StageAnalysis::raw_entropy,
          &codec::StageAnalysis::delta_entropy}) {
      codec::StageBits& to = (*st).*stage;
      const codec::StageBits& was = (*before.stages).*stage;
      const codec::StageBits& is = (*now.stages).*stage;
      for (std::size_t lk = 0; lk < to.per_layer.size(); ++lk) {
        const std::size_t from = nearest(lk / 2) * 2 + lk % 2;
        if (from < is.per_layer.size() && from < was.per_layer.size())
          to.per_layer[lk] *= ratio(is.per_layer[from], was.per_layer[from]);
      }
      if (!to.per_layer.empty())
        to.overall =
            std::accumulate(to.per_layer.begin(), to.per_layer.end(), 0.0) / double(to.per_layer.size());
    }
    const double per_lk = LK ? double(o.elements) / double(LK) : 0;
    for (std::size_t lk = 0; lk < st->coded.per_layer.size() && lk < LK; ++lk)
      st->coded.per_layer[lk] = per_lk > 0 ? 8.0 * double(o.layer_bytes[lk]) / per_lk : 0;
    st->coded.overall = o.bits_per_element();
    st->coded_payload = o.elements ? 8.0 * double(o.payload_bytes) / double(o.elements) : 0;
    out.stages = std::move(st);
  }
  return out;
}

}  // namespace kvscope::gui
