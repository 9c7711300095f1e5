// SPDX-License-Identifier: Apache-2.0
#include "kvscope/kv/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kvscope/common/error.h"
#include "kvscope/common/fp16.h"

namespace kvscope::kv {

KVCache::KVCache(const CacheShape& shape) : shape_(shape) {
  require(shape.layers >= 0 && shape.kv_heads >= 0 && shape.tokens >= 0 && shape.head_dim >= 0,
          ErrorCode::InvalidArgument, "KV cache shape has a negative dimension");
  const double elements = 2.0 * shape.layers * shape.kv_heads * double(shape.tokens) * shape.head_dim;
  require(elements < double(std::numeric_limits<std::ptrdiff_t>::max()) / 8,
          ErrorCode::InvalidArgument, "KV cache shape is too large");
  data_.assign(shape.elements(), 0.0f);
}

std::span<float> KVCache::tensor(int layer, Kind kind) {
  return std::span<float>(data_).subspan(index(layer, kind, 0, 0, 0), shape_.tensor_elements());
}

std::span<const float> KVCache::tensor(int layer, Kind kind) const {
  return std::span<const float>(data_).subspan(index(layer, kind, 0, 0, 0), shape_.tensor_elements());
}

KVCache KVCache::slice_tokens(int begin, int end) const {
  require(0 <= begin && begin <= end && end <= shape_.tokens, ErrorCode::InvalidArgument,
          "token slice [" + std::to_string(begin) + ", " + std::to_string(end) +
              ") is outside a cache of " + std::to_string(shape_.tokens) + " tokens");
  CacheShape s = shape_;
  s.tokens = end - begin;
  KVCache out(s);
  out.info = info;
  auto slice_ids = [&](const std::vector<std::int32_t>& v) {
    return v.size() == std::size_t(shape_.tokens) ? std::vector<std::int32_t>(v.begin() + begin, v.begin() + end)
                                                  : std::vector<std::int32_t>{};
  };
  out.info.token_ids = slice_ids(info.token_ids);
  out.info.positions = slice_ids(info.positions);
  for (int l = 0; l < shape_.layers; ++l) {
    for (Kind k : kKinds) {
      for (int h = 0; h < shape_.kv_heads; ++h) {
        const float* src = &data_[index(l, k, h, begin, 0)];
        std::copy(src, src + std::size_t(s.tokens) * s.head_dim, &out.at(l, k, h, 0, 0));
      }
    }
  }
  return out;
}

KVCache KVCache::concat_tokens(std::span<const KVCache> parts) {
  if (parts.empty()) return KVCache();
  CacheShape s = parts[0].shape();
  s.tokens = 0;
  for (const auto& p : parts) {
    const CacheShape& ps = p.shape();
    require(ps.layers == s.layers && ps.kv_heads == s.kv_heads && ps.head_dim == s.head_dim,
            ErrorCode::InvalidArgument, "cannot concatenate KV caches of different shapes");
    s.tokens += ps.tokens;
  }
  KVCache out(s);
  out.info = parts[0].info;
  out.info.token_ids.clear();
  out.info.positions.clear();
  bool ids = true, pos = true;
  for (const auto& p : parts) {
    ids = ids && p.info.token_ids.size() == std::size_t(p.shape().tokens);
    pos = pos && p.info.positions.size() == std::size_t(p.shape().tokens);
  }
  int offset = 0;
  for (const auto& p : parts) {
    const int t = p.shape().tokens;
    for (int l = 0; l < s.layers; ++l) {
      for (Kind k : kKinds) {
        for (int h = 0; h < s.kv_heads; ++h) {
          const float* src = &p.data_[p.index(l, k, h, 0, 0)];
          std::copy(src, src + std::size_t(t) * s.head_dim, &out.at(l, k, h, offset, 0));
        }
      }
    }
    if (ids) out.info.token_ids.insert(out.info.token_ids.end(), p.info.token_ids.begin(), p.info.token_ids.end());
    if (pos) out.info.positions.insert(out.info.positions.end(), p.info.positions.begin(), p.info.positions.end());
    offset += t;
  }
  return out;
}

void KVCache::round_to_fp16() {
  for (float& v : data_) v = round_to_half(v);
}

float max_abs_difference(const KVCache& a, const KVCache& b) {
  require(a.shape() == b.shape(), ErrorCode::InvalidArgument, "caches have different shapes");
  float worst = 0.0f;
  const auto da = a.data();
  const auto db = b.data();
  for (std::size_t i = 0; i < da.size(); ++i) {
    const float d = std::fabs(da[i] - db[i]);
    if (!(d <= worst)) worst = d;  // also propagates NaN
  }
  return worst;
}

}  // namespace kvscope::kv
