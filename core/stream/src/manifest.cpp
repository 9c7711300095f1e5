// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/manifest.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "kvscope/codec/bitstream.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"

namespace kvscope::stream {
namespace {

constexpr std::uint32_t kManifestVersion = 1;
constexpr std::size_t kPrefix = 12;  // magic, version, CRC

void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int b = 0; b < 4; ++b) out.push_back(static_cast<std::uint8_t>(v >> (8 * b)));
}
std::uint32_t get32(const std::uint8_t* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}

// Typed field access that names the field in its error.
struct Reader {
  const std::string& source;
  [[noreturn]] void bad(const std::string& field, const std::string& why) const {
    throw Error(ErrorCode::Format, source, "manifest field '" + field + "' " + why);
  }
  const nlohmann::json& at(const nlohmann::json& j, const std::string& field) const {
    if (!j.is_object() || !j.contains(field)) bad(field, "is missing");
    return j.at(field);
  }
  std::string str(const nlohmann::json& j, const std::string& field, std::size_t max = 256) const {
    const auto& v = at(j, field);
    if (!v.is_string() || v.get_ref<const std::string&>().size() > max) bad(field, "must be a short string");
    return v.get<std::string>();
  }
  long long integer(const nlohmann::json& v, const std::string& field, long long lo, long long hi) const {
    if (!v.is_number_integer()) bad(field, "must be an integer");
    const long long x = v.get<long long>();
    if (x < lo || x > hi) bad(field, "is out of range");
    return x;
  }
  long long integer_at(const nlohmann::json& j, const std::string& field, long long lo, long long hi) const {
    return integer(at(j, field), field, lo, hi);
  }
};

bool valid_hex(const std::string& s, std::size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

int Manifest::find(const codec::CodecConfig& config) const {
  const std::string id = level_id(config);
  for (std::size_t i = 0; i < levels.size(); ++i)
    if (levels[i].id == id) return static_cast<int>(i);
  return -1;
}

std::string Manifest::key(int chunk, int level) const {
  const ChunkRange& r = chunks.at(static_cast<std::size_t>(chunk));
  return chunk_key(context, r.begin, r.end, levels.at(static_cast<std::size_t>(level)).id);
}

std::vector<std::uint8_t> serialize_manifest(const Manifest& m) {
  nlohmann::json j;
  j["model_hash"] = m.context.model_hash;
  j["prefix_hash"] = m.context.prefix_hash;
  j["model_name"] = m.model_name;
  j["shape"] = {{"layers", m.shape.layers},
                {"kv_heads", m.shape.kv_heads},
                {"tokens", m.shape.tokens},
                {"head_dim", m.shape.head_dim}};
  j["chunk_tokens"] = m.chunk_tokens;
  auto& levels = j["levels"] = nlohmann::json::array();
  for (const auto& l : m.levels) {
    levels.push_back({{"id", l.id},
                      {"name", l.name},
                      {"codec", l.config.codec},
                      {"params", l.config.params},
                      {"bytes", l.bytes},
                      {"crc32c", l.crc32c},
                      {"decode_seconds", l.decode_seconds}});
  }
  const std::string text = j.dump();
  std::vector<std::uint8_t> out{'K', 'V', 'S', 'M'};
  put32(out, kManifestVersion);
  put32(out, crc32c(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())));
  out.insert(out.end(), text.begin(), text.end());
  return out;
}

Manifest parse_manifest(std::span<const std::uint8_t> bytes, const std::string& source) {
  require(bytes.size() >= kPrefix, ErrorCode::Format,
          source + ": manifest truncated (" + std::to_string(bytes.size()) + " bytes)");
  if (std::memcmp(bytes.data(), "KVSM", 4) != 0)
    throw Error(ErrorCode::Format, source, "not a manifest (bad magic)");
  const std::uint32_t version = get32(bytes.data() + 4);
  if (version != kManifestVersion)
    throw Error(ErrorCode::Unsupported, source,
                "manifest version " + std::to_string(version) + " (this build reads 1)");
  const auto body = bytes.subspan(kPrefix);
  if (crc32c(body) != get32(bytes.data() + 8))
    throw Error(ErrorCode::Checksum, source, "manifest CRC mismatch (altered in the store)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::Format, source, std::string("manifest is not valid JSON: ") + e.what());
  }
  const Reader r{source};
  Manifest m;
  m.context.model_hash = r.str(j, "model_hash");
  m.context.prefix_hash = r.str(j, "prefix_hash");
  if (!valid_hex(m.context.model_hash, 16)) r.bad("model_hash", "must be 16 hex digits");
  if (!valid_hex(m.context.prefix_hash, 32)) r.bad("prefix_hash", "must be 32 hex digits");
  m.model_name = r.str(j, "model_name");
  const auto& shape = r.at(j, "shape");
  constexpr long long kMaxDim = 1 << 20;
  m.shape.layers = static_cast<int>(r.integer_at(shape, "layers", 1, 4096));
  m.shape.kv_heads = static_cast<int>(r.integer_at(shape, "kv_heads", 1, 4096));
  m.shape.tokens = static_cast<int>(r.integer_at(shape, "tokens", 1, 1 << 24));
  m.shape.head_dim = static_cast<int>(r.integer_at(shape, "head_dim", 1, kMaxDim));
  m.chunk_tokens = static_cast<int>(r.integer_at(j, "chunk_tokens", 1, 1 << 24));
  if ((std::int64_t(m.shape.tokens) + m.chunk_tokens - 1) / m.chunk_tokens > 100000)
    r.bad("chunk_tokens", "gives more than 100000 chunks");
  m.chunks = split_into_chunks(m.shape.tokens, m.chunk_tokens);
  const auto& levels = r.at(j, "levels");
  if (!levels.is_array() || levels.empty() || levels.size() > 256)
    r.bad("levels", "must be a non-empty array");
  const std::size_t n = m.chunks.size();
  for (std::size_t i = 0; i < levels.size(); ++i) {
    const auto& l = levels[i];
    const std::string where = "levels[" + std::to_string(i) + "]";
    ManifestLevel level;
    level.id = r.str(l, "id");
    level.name = r.str(l, "name");
    level.config.codec = r.str(l, "codec");
    const auto& params = r.at(l, "params");
    if (!params.is_object()) r.bad(where + ".params", "must be an object");
    for (const auto& [k, v] : params.items()) {
      if (!v.is_string()) r.bad(where + ".params." + k, "must be a string");
      level.config.params[k] = v.get<std::string>();
    }
    if (level.id != level_id(level.config)) r.bad(where + ".id", "does not match its codec configuration");
    const auto& b = r.at(l, "bytes");
    const auto& c = r.at(l, "crc32c");
    const auto& d = r.at(l, "decode_seconds");
    if (!b.is_array() || !c.is_array() || !d.is_array() || b.size() != n || c.size() != n || d.size() != n)
      r.bad(where,
            "needs bytes, crc32c and decode_seconds with one entry per chunk (" + std::to_string(n) + ")");
    for (std::size_t k = 0; k < n; ++k) {
      level.bytes.push_back(static_cast<std::uint64_t>(r.integer(b[k], where + ".bytes", 1, 1ll << 40)));
      level.crc32c.push_back(static_cast<std::uint32_t>(r.integer(c[k], where + ".crc32c", 0, 0xFFFFFFFFll)));
      if (!d[k].is_number() || !std::isfinite(d[k].get<double>()) || d[k].get<double>() < 0)
        r.bad(where + ".decode_seconds", "must hold finite numbers >= 0");
      level.decode_seconds.push_back(d[k].get<double>());
    }
    for (const auto& other : m.levels)
      if (other.id == level.id) r.bad(where + ".id", "repeats an earlier level");
    m.levels.push_back(std::move(level));
  }
  return m;
}

Manifest make_manifest(const EncodedContext& context, std::span<const LadderLevel> levels) {
  const auto& cache = context.cache();
  Manifest m;
  m.context = context_id(cache);
  m.model_name = cache.info.model_name;
  m.shape = cache.shape();
  m.chunk_tokens = context.chunk_tokens();
  m.chunks = context.chunks();
  for (const auto& l : levels) {
    if (m.find(l.config) >= 0) continue;  // two ladder names for one configuration
    ManifestLevel level;
    level.id = level_id(l.config);
    level.name = l.name;
    level.config = l.config;
    for (const auto& r : m.chunks) {
      const EncodedChunk& e = context.get(r.index, l.config);
      level.bytes.push_back(e.bytes.size());
      level.crc32c.push_back(crc32c(e.bytes));
      level.decode_seconds.push_back(e.decode_seconds);
    }
    m.levels.push_back(std::move(level));
  }
  return m;
}

PublishReport publish(const EncodedContext& context, std::span<const LadderLevel> levels, ChunkStore& store,
                      const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  PublishReport report;
  Manifest m = make_manifest(context, levels);
  const std::size_t total = m.levels.size() * m.chunks.size();
  std::size_t done = 0;
  for (std::size_t l = 0; l < m.levels.size(); ++l) {
    for (const auto& r : m.chunks) {
      report_progress(progress, double(done) / double(total + 1),
                      "publishing chunk " + std::to_string(r.index + 1) + " at " + m.levels[l].name);
      const auto& bytes = context.get(r.index, m.levels[l].config).bytes;
      store.put(m.key(r.index, static_cast<int>(l)), bytes);
      report.bytes += bytes.size();
      ++report.values;
      ++done;
    }
  }
  // Levels published before stay listed (their chunks were written then;
  // a fetch reports any that went missing since, by key).
  if (auto old = load_manifest(store, m.context, m.chunk_tokens); old && old->shape == m.shape)
    for (const auto& level : old->levels)
      if (m.find(level.config) < 0) m.levels.push_back(level);
  const auto manifest = serialize_manifest(m);
  store.put(m.manifest_key(), manifest);
  report.bytes += manifest.size();
  ++report.values;
  report_progress(progress, 1.0, "published");
  report.manifest = std::move(m);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

std::optional<Manifest> load_manifest(ChunkStore& store, const ContextId& context, int chunk_tokens) {
  const std::string key = manifest_key(context, chunk_tokens);
  auto bytes = store.get(key);
  if (!bytes) return std::nullopt;
  Manifest m = parse_manifest(*bytes, store.describe() + " key " + key);
  if (!(m.context == context) || m.chunk_tokens != chunk_tokens)
    throw Error(ErrorCode::Format, store.describe() + " key " + key, "manifest describes another context");
  return m;
}

std::vector<std::uint8_t> fetch_chunk(ChunkStore& store, const Manifest& m, int chunk, int level,
                                      const ReadPacer& pace, FetchStats* stats) {
  const std::string key = m.key(chunk, level);
  auto bytes = store.get(key, pace, stats);
  const std::string where = store.describe() + " key " + key;
  if (!bytes)
    throw Error(ErrorCode::Io, "chunk " + std::to_string(chunk) + " (" + m.levels[level].name +
                                   ") is missing from " + where +
                                   " (evicted or removed since it was published?)");
  const auto& l = m.levels[static_cast<std::size_t>(level)];
  if (bytes->size() != l.bytes[chunk] || crc32c(*bytes) != l.crc32c[chunk])
    throw Error(ErrorCode::Checksum, "chunk " + std::to_string(chunk) + " from " + where +
                                         " is corrupt: " + std::to_string(bytes->size()) +
                                         " bytes, CRC32C does not match the manifest's (" +
                                         std::to_string(l.bytes[chunk]) + " bytes expected)");
  codec::StreamInfo info;
  try {
    info = codec::inspect_stream(*bytes, true);
  } catch (const Error& e) {
    throw Error(e.code(), "chunk " + std::to_string(chunk) + " from " + where + ": " + e.what());
  }
  const auto& r = m.chunks[static_cast<std::size_t>(chunk)];
  const bool shape_ok = info.shape.layers == m.shape.layers && info.shape.kv_heads == m.shape.kv_heads &&
                        info.shape.head_dim == m.shape.head_dim && info.shape.tokens == r.tokens() &&
                        info.total_bytes == bytes->size() && info.codec == l.config.codec;
  if (!shape_ok)
    throw Error(ErrorCode::Format, "chunk " + std::to_string(chunk) + " from " + where +
                                       ": the bitstream's shape or codec is not the manifest's");
  return std::move(*bytes);
}

}  // namespace kvscope::stream
