// SPDX-License-Identifier: Apache-2.0
// cachegen's encoder: quantizes every chunk of every (layer, kind), builds
// the per-channel symbol models (or takes a calibration profile's), and
// writes the Table and Chunk sections (docs/bitstream.md, "cachegen").
#include <atomic>
#include <optional>

#include "cachegen_codec.h"
#include "cachegen_internal.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail::cachegen {

void describe_cachegen_header(const Params& p, const Layout& layout, EncodedParts& parts) {
  parts.codec_version = std::uint16_t(layout.version());
  parts.header_params = header_params(p, layout);
}

namespace {

// One (layer, kind): its chunks' symbols, counts and both candidate codings.
struct LayerWork {
  std::vector<ChunkSymbols> chunks;
  std::vector<std::uint64_t> anchor, delta, raw;  // per-channel counts [c * alphabet + s]
  std::vector<FreqModel> am, dm;                  // the models shipped in a Table section
  std::vector<std::uint8_t> raw_mode;             // their raw/delta choice per channel
  double own_bits = 0;                            // symbols under the shipped models, plus the tables
  double profile_bits = 0;                        // symbols under the calibration's models
};

// The symbol tables a stream uses: its own ("" or no fitting calibration), a
// given calibration file's when they were counted for this layout, or with
// "auto" the model's calibration from the calibration folder when one fits
// (kept only if it codes this cache smaller).
std::optional<Profile> candidate_profile(const std::string& setting, const kv::CacheInfo& info,
                                         const Layout& L) {
  if (setting.empty()) return std::nullopt;
  if (setting == "auto") return find_model_profile(info, L);
  return file_profile_for(load_profile_file(setting), L, setting);
}

}  // namespace

EncodedParts encode_cachegen(const kv::KVCache& input, const Params& p, const EncodeOptions& o) {
  const auto& sh = input.shape();
  const Layout L = encoding_layout(p, input);
  kv::KVCache pre_rope;
  const kv::KVCache& cache = coding_cache(input, L, pre_rope);
  const int C = L.channels;
  const int chunks = chunk_count(sh.tokens, L.chunk_tokens);
  const std::optional<Profile> profile = candidate_profile(p.get("profile"), input.info, L);
  const std::size_t LK = std::size_t(L.layers) * 2;

  // 1. Quantize and count; cost of shipping own tables and of the calibration's.
  std::vector<LayerWork> work(LK);
  std::atomic<int> done{0};
  parallel_for(LK, o.threads, [&](std::size_t lk) {
    const int l = int(lk / 2), k = int(lk % 2);
    const int A = L.anchor_alphabet(l, k), B = L.delta_alphabet(l, k);
    LayerWork& w = work[lk];
    w.chunks.resize(chunks);
    w.anchor.assign(std::size_t(C) * A, 0);
    w.delta.assign(std::size_t(C) * B, 0);
    w.raw.assign(std::size_t(C) * A, 0);
    for (int ci = 0; ci < chunks; ++ci) {
      const int b = ci * L.chunk_tokens;
      w.chunks[ci] =
          quantize_chunk(cache, l, kv::Kind(k), b, std::min(L.chunk_tokens, sh.tokens - b), L, &input);
      count_symbols(w.chunks[ci], L, l, k, w.anchor, w.delta);
      count_raw(w.chunks[ci], L, l, k, w.raw);
    }
    w.am.resize(C);
    w.dm.resize(C);
    w.raw_mode.resize(C);
    std::vector<std::uint8_t> table;
    ByteWriter tw(table);
    for (int c = 0; c < C; ++c) {
      std::span<const std::uint64_t> a{w.anchor.data() + std::size_t(c) * A, std::size_t(A)};
      std::span<const std::uint64_t> d{w.delta.data() + std::size_t(c) * B, std::size_t(B)};
      std::span<const std::uint64_t> rw{w.raw.data() + std::size_t(c) * A, std::size_t(A)};
      w.raw_mode[c] = choose_raw(L, rw, a, d, true);
      w.am[c] = table_model(w.raw_mode[c] ? rw : a, L.table_bits);
      if (!w.raw_mode[c]) w.dm[c] = table_model(d, L.table_bits);
      w.own_bits += w.raw_mode[c] ? w.am[c].cost_bits(rw) : w.am[c].cost_bits(a) + w.dm[c].cost_bits(d);
      tw.u8(w.raw_mode[c]);
      write_table_model(tw, w.am[c], L.table_bits);
      write_table_model(tw, w.dm[c], L.table_bits);
      if (profile) {
        const std::size_t i = lk * C + c;
        w.profile_bits += profile->raw[i] ? profile->anchor[i].cost_bits(rw)
                                          : profile->anchor[i].cost_bits(a) + profile->delta[i].cost_bits(d);
      }
    }
    w.own_bits += 8.0 * double(table.size());
    report_progress(o.progress, 0.5 * double(++done) / double(LK), "encoding cachegen");
  });

  // 2. Which tables: a given calibration always; "auto" only where it is smaller.
  bool use_profile = profile.has_value();
  if (use_profile && p.get("profile") == "auto") {
    double own = 0, calibrated = 0;
    for (const auto& w : work) own += w.own_bits, calibrated += w.profile_bits;
    use_profile = calibrated < own;
  }
  EncodedParts parts;
  describe_cachegen_header(p, L, parts);
  ByteWriter hw(parts.codec_header);
  hw.u8(kCoderRange);
  hw.u8(use_profile ? kTablesProfile : kTablesObject);
  if (use_profile) hw.bytes(profile->hash.data(), 16);
  write_channel_scales(hw, L);
  const int per_lk = chunks + (use_profile ? 0 : 1);
  parts.sections.resize(LK * per_lk);
  std::vector<double> bits(LK, 0.0);

  // 3. Sections.
  done = 0;
  parallel_for(LK, o.threads, [&](std::size_t lk) {
    const int l = int(lk / 2), k = int(lk % 2);
    const int A = L.anchor_alphabet(l, k), B = L.delta_alphabet(l, k);
    LayerWork& w = work[lk];
    auto& am = w.am;
    auto& dm = w.dm;
    auto& raw = w.raw_mode;
    if (use_profile)
      for (int c = 0; c < C; ++c) {
        am[c] = profile->anchor[lk * C + c];
        dm[c] = profile->delta[lk * C + c];
        raw[c] = profile->raw[lk * C + c];
      }
    double b = 0;
    for (int c = 0; c < C; ++c) {
      std::span<const std::uint64_t> a{w.anchor.data() + std::size_t(c) * A, std::size_t(A)};
      std::span<const std::uint64_t> d{w.delta.data() + std::size_t(c) * B, std::size_t(B)};
      std::span<const std::uint64_t> rw{w.raw.data() + std::size_t(c) * A, std::size_t(A)};
      b += raw[c] ? am[c].cost_bits(rw) : am[c].cost_bits(a) + dm[c].cost_bits(d);
    }
    // Sink values are stored as f16: 16 bits each, counted like coded symbols.
    for (const auto& q : w.chunks) b += 16.0 * double(q.sink_values.size());
    bits[lk] = b;
    std::size_t si = lk * per_lk;
    if (!use_profile) {
      auto& t = parts.sections[si++];
      t.kind = SectionKind::Table;
      t.layer = l;
      t.kv = kv::Kind(k);
      ByteWriter tw(t.payload);
      for (int c = 0; c < C; ++c) {
        tw.u8(raw[c]);
        write_table_model(tw, am[c], L.table_bits);
        write_table_model(tw, dm[c], L.table_bits);
      }
      t.table_bytes = t.payload.size();
    }
    std::vector<std::uint8_t> streams;
    std::vector<std::size_t> lens(C);
    for (int ci = 0; ci < chunks; ++ci, ++si) {
      const auto& q = w.chunks[ci];
      const int n = q.coded();
      auto& s = parts.sections[si];
      s.layer = l;
      s.kv = kv::Kind(k);
      s.token_begin = q.begin;
      s.token_count = q.count;
      ByteWriter sw(s.payload);
      for (auto v : q.sink_values) sw.u16(v);  // values, so counted as payload
      const std::size_t steps_at = s.payload.size();
      write_steps(sw, q.steps, L);
      s.step_bytes = s.payload.size() - steps_at;
      streams.clear();
      for (int c = 0; c < C; ++c) {
        const std::size_t before = streams.size();
        RangeEncoder enc(streams);
        const std::uint16_t* sy = (raw[c] ? q.raw.data() : q.sym.data()) + std::size_t(c) * n;
        const auto& ac_ = am[c].cdf;
        const auto& dc_ = dm[c].cdf;
        const int group = raw[c] ? 1 : L.group_size;
        for (int t = 0; t < n; ++t) {
          const auto& cdf = (t % group == 0) ? ac_ : dc_;
          enc.encode(cdf[sy[t]], cdf[sy[t] + 1] - cdf[sy[t]]);
        }
        enc.finish();
        lens[c] = streams.size() - before;
      }
      const std::size_t lens_at = s.payload.size();
      for (int c = 0; c < C; ++c) sw.varint(lens[c]);
      s.table_bytes = s.payload.size() - lens_at;  // stream lengths are side info
      sw.bytes(streams.data(), streams.size());
    }
    w.chunks.clear();
    report_progress(o.progress, 0.5 + 0.5 * double(++done) / double(LK), "encoding cachegen");
  });
  for (double b : bits) parts.entropy_bits += b;
  return parts;
}

}  // namespace kvscope::codec::detail::cachegen
