// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/chunk_key.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <charconv>
#include <cstdio>
#include <vector>

#include "kvscope/common/error.h"
#include "kvscope/stream/ladder.h"

namespace kvscope::stream {
namespace {

std::string hex64(std::uint64_t v, int digits) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return std::string(buf + 16 - digits, buf + 16);
}

bool is_hex(std::string_view s, std::size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool parse_int(std::string_view s, int& out) {
  if (s.empty() || s.size() > 9) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && out >= 0;
}

const std::string kScheme = "kvscope:" + std::to_string(kKeySchemeVersion) + ":";

}  // namespace

std::string model_hash(const kv::CacheInfo& info, const kv::CacheShape& shape) {
  if (is_hex(info.model_sha256, 64)) return info.model_sha256.substr(0, 16);
  const std::string id = info.model_name + "|" + info.architecture + "|" + std::to_string(shape.layers) +
                         "|" + std::to_string(shape.kv_heads) + "|" + std::to_string(shape.head_dim);
  return hex64(XXH3_64bits(id.data(), id.size()), 16);
}

std::string prefix_hash(std::span<const std::int32_t> token_ids) {
  std::vector<std::uint8_t> bytes(token_ids.size() * 4);
  for (std::size_t i = 0; i < token_ids.size(); ++i)
    for (int b = 0; b < 4; ++b)
      bytes[i * 4 + b] = static_cast<std::uint8_t>(static_cast<std::uint32_t>(token_ids[i]) >> (8 * b));
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return hex64(h.high64, 16) + hex64(h.low64, 16);
}

std::string level_id(const codec::CodecConfig& config) {
  const std::string key = config_key(config);
  return hex64(XXH3_64bits(key.data(), key.size()), 12);
}

std::string content_hash(const kv::KVCache& cache) {
  const auto data = cache.data();
  const XXH128_hash_t h = XXH3_128bits_withSeed(data.data(), data.size_bytes(), 1);
  return hex64(h.high64, 16) + hex64(h.low64, 16);
}

ContextId context_id(const kv::KVCache& cache) {
  if (cache.info.token_ids.empty()) return {model_hash(cache.info, cache.shape()), content_hash(cache)};
  return context_id(cache.info, cache.shape());
}

ContextId context_id(const kv::CacheInfo& info, const kv::CacheShape& shape) {
  require(!info.token_ids.empty() && static_cast<int>(info.token_ids.size()) == shape.tokens,
          ErrorCode::InvalidArgument,
          "the cache carries no token ids: a store names a context by its tokens");
  return {model_hash(info, shape), prefix_hash(info.token_ids)};
}

std::string context_prefix(const ContextId& id) {
  return kScheme + "{" + id.model_hash + "." + id.prefix_hash + "}:";
}

std::string chunk_key(const ContextId& id, int begin, int end, const std::string& level) {
  return context_prefix(id) + std::to_string(begin) + "-" + std::to_string(end) + ":" + level;
}

std::string manifest_key(const ContextId& id, int chunk_tokens) {
  return context_prefix(id) + "manifest:" + std::to_string(chunk_tokens);
}

std::optional<ParsedKey> parse_key(const std::string& key) {
  std::string_view s(key);
  if (s.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  s.remove_prefix(kScheme.size());
  // {model.prefix}:
  if (s.size() < 1 + 16 + 1 + 32 + 2 || s[0] != '{' || s[17] != '.' || s[50] != '}' || s[51] != ':')
    return std::nullopt;
  ParsedKey p;
  p.context.model_hash = std::string(s.substr(1, 16));
  p.context.prefix_hash = std::string(s.substr(18, 32));
  if (!is_hex(p.context.model_hash, 16) || !is_hex(p.context.prefix_hash, 32)) return std::nullopt;
  s.remove_prefix(52);
  if (s.substr(0, 9) == "manifest:") {
    p.manifest = true;
    if (!parse_int(s.substr(9), p.chunk_tokens) || p.chunk_tokens == 0) return std::nullopt;
    return p;
  }
  const auto dash = s.find('-'), colon = s.find(':');
  if (dash == std::string_view::npos || colon == std::string_view::npos || dash > colon) return std::nullopt;
  if (!parse_int(s.substr(0, dash), p.begin) || !parse_int(s.substr(dash + 1, colon - dash - 1), p.end) ||
      p.end <= p.begin)
    return std::nullopt;
  p.level = std::string(s.substr(colon + 1));
  if (!is_hex(p.level, 12)) return std::nullopt;
  return p;
}

int cluster_slot(const std::string& key) {
  // The hash tag: the bytes between the first '{' and the next '}', when
  // that is not empty (Redis Cluster specification, "Hash tags").
  std::string_view s(key);
  const auto open = s.find('{');
  if (open != std::string_view::npos) {
    const auto close = s.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) s = s.substr(open + 1, close - open - 1);
  }
  std::uint16_t crc = 0;  // CRC16-CCITT (XMODEM): poly 0x1021, init 0, no reflection
  for (char ch : s) {
    crc ^= static_cast<std::uint16_t>(static_cast<std::uint8_t>(ch)) << 8;
    for (int b = 0; b < 8; ++b)
      crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : crc << 1;
  }
  return crc & 16383;
}

}  // namespace kvscope::stream
