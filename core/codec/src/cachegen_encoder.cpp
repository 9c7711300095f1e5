// cachegen's encoder: quantizes every chunk of every (layer, kind), builds
// the per-channel symbol models (or takes a calibration profile's), and
// writes the Table and Chunk sections (docs/bitstream.md, "cachegen").
#include <atomic>

#include "cachegen_codec.h"
#include "cachegen_internal.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec::detail::cachegen {

void describe_cachegen_header(const Params& p, const Layout& layout, EncodedParts& parts) {
  parts.codec_version = layout.needs_v3() ? kLayoutVersion : kLayoutVersionPlain;
  parts.header_params = header_params(p, layout);
}

EncodedParts encode_cachegen(const kv::KVCache& cache, const Params& p, const EncodeOptions& o) {
  const auto& sh = cache.shape();
  const Layout L = make_layout(p, sh);
  const int C = L.channels;
  const int chunks = chunk_count(sh.tokens, L.chunk_tokens);
  Profile profile;
  const bool use_profile = !p.get("profile").empty();
  if (use_profile) {
    profile = load_profile_file(p.get("profile"));
    if (!profile_fits(profile, L))
      throw Error(ErrorCode::InvalidArgument, p.get("profile"),
                  "calibration profile was built for another model shape, other bins or another scale, or "
                  "delta_mode is float");
  }
  EncodedParts parts;
  describe_cachegen_header(p, L, parts);
  ByteWriter hw(parts.codec_header);
  hw.u8(kCoderRange);
  hw.u8(use_profile ? kTablesProfile : kTablesObject);
  if (use_profile) hw.bytes(profile.hash.data(), 16);
  const int per_lk = chunks + (use_profile ? 0 : 1);
  parts.sections.resize(std::size_t(L.layers) * 2 * per_lk);
  std::vector<double> bits(std::size_t(L.layers) * 2, 0.0);
  std::atomic<int> done{0};
  parallel_for(std::size_t(L.layers) * 2, o.threads, [&](std::size_t lk) {
    const int l = int(lk / 2), k = int(lk % 2);
    const int A = L.anchor_alphabet(l, k), B = L.delta_alphabet(l, k);
    std::vector<ChunkSymbols> cs(chunks);
    std::vector<std::uint64_t> ac(std::size_t(C) * A), dc(std::size_t(C) * B), rc(std::size_t(C) * A);
    for (int ci = 0; ci < chunks; ++ci) {
      const int b = ci * L.chunk_tokens;
      cs[ci] = quantize_chunk(cache, l, kv::Kind(k), b, std::min(L.chunk_tokens, sh.tokens - b), L);
      count_symbols(cs[ci], L, l, k, ac, dc);
      count_raw(cs[ci], L, l, k, rc);
    }
    std::vector<FreqModel> am(C), dm(C);
    std::vector<std::uint8_t> raw(C);
    double b = 0;
    for (int c = 0; c < C; ++c) {
      std::span<const std::uint64_t> a{ac.data() + std::size_t(c) * A, std::size_t(A)};
      std::span<const std::uint64_t> d{dc.data() + std::size_t(c) * B, std::size_t(B)};
      std::span<const std::uint64_t> rw{rc.data() + std::size_t(c) * A, std::size_t(A)};
      raw[c] = use_profile ? profile.raw[lk * C + c] : choose_raw(L, rw, a, d, true);
      if (use_profile) {
        am[c] = profile.anchor[lk * C + c];
        dm[c] = profile.delta[lk * C + c];
      } else {
        am[c] = table_model(raw[c] ? rw : a, L.table_bits);
        if (!raw[c]) dm[c] = table_model(d, L.table_bits);
      }
      b += raw[c] ? am[c].cost_bits(rw) : am[c].cost_bits(a) + dm[c].cost_bits(d);
    }
    // Sink values are stored as f16: 16 bits each, counted like coded symbols.
    for (const auto& q : cs) b += 16.0 * double(q.sink_values.size());
    bits[lk] = b;
    std::size_t si = lk * per_lk;
    if (!use_profile) {
      auto& t = parts.sections[si++];
      t.kind = SectionKind::Table;
      t.layer = l;
      t.kv = kv::Kind(k);
      ByteWriter w(t.payload);
      for (int c = 0; c < C; ++c) {
        w.u8(raw[c]);
        write_table_model(w, am[c], L.table_bits);
        write_table_model(w, dm[c], L.table_bits);
      }
      t.table_bytes = t.payload.size();
    }
    std::vector<std::uint8_t> streams;
    std::vector<std::size_t> lens(C);
    for (int ci = 0; ci < chunks; ++ci, ++si) {
      const auto& q = cs[ci];
      const int n = q.coded();
      auto& s = parts.sections[si];
      s.layer = l;
      s.kv = kv::Kind(k);
      s.token_begin = q.begin;
      s.token_count = q.count;
      ByteWriter w(s.payload);
      for (auto v : q.sink_values) w.u16(v);  // values, so counted as payload
      const std::size_t steps_at = s.payload.size();
      write_steps(w, q.steps, L);
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
      for (int c = 0; c < C; ++c) w.varint(lens[c]);
      s.table_bytes = s.payload.size() - lens_at;  // stream lengths are side info
      w.bytes(streams.data(), streams.size());
    }
    report_progress(o.progress, double(++done) / double(L.layers * 2), "encoding cachegen");
  });
  for (double b : bits) parts.entropy_bits += b;
  return parts;
}

}  // namespace kvscope::codec::detail::cachegen
