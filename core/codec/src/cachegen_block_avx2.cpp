// SPDX-License-Identifier: Apache-2.0
#include "cachegen_block_avx2.h"

#include <immintrin.h>

#include <atomic>
#include <cstdlib>
#include <vector>

#include "cachegen_internal.h"

namespace kvscope::codec::detail::cachegen {

namespace {

std::atomic<bool>& simd_switch() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("KVSCOPE_NO_SIMD");
    return !(e && *e && *e != '0');
  }()};
  return on;
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

// One symbol of each of the 8 lanes: RangeDecoder::decode(), lane-parallel.
struct Lanes {
  __m256i code, range, pos, end;
};

__attribute__((target("avx2"))) inline __m256i floor_div(__m256i code, __m256i r) {
  // code / r for u32 code and 2^8 <= r < 2^16, through doubles (exact: see
  // RangeDecoder; the quotient's distance to the next integer exceeds the
  // rounding error).
  const __m256i flip = _mm256_set1_epi32(std::int32_t(0x80000000u));
  const __m256d two31 = _mm256_set1_pd(2147483648.0);
  const __m256i cs = _mm256_xor_si256(code, flip);
  const __m256d c_lo = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(cs)), two31);
  const __m256d c_hi = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(cs, 1)), two31);
  const __m256d r_lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(r));
  const __m256d r_hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(r, 1));
  const __m128i q_lo = _mm256_cvttpd_epi32(_mm256_div_pd(c_lo, r_lo));
  const __m128i q_hi = _mm256_cvttpd_epi32(_mm256_div_pd(c_hi, r_hi));
  return _mm256_set_m128i(q_hi, q_lo);
}

__attribute__((target("avx2"))) inline __m256i decode8(Lanes& L, const std::uint32_t* bucket,
                                                       __m256i bucket_base, const std::uint32_t* cdf,
                                                       __m256i cdf_base, const std::uint8_t* streams) {
  const __m256i r = _mm256_srli_epi32(L.range, kProbBits);
  __m256i v = floor_div(L.code, r);
  v = _mm256_min_epu32(v, _mm256_set1_epi32(std::int32_t(kProbTotal - 1)));
  __m256i s =
      _mm256_i32gather_epi32(reinterpret_cast<const int*>(bucket),
                             _mm256_add_epi32(bucket_base, _mm256_srli_epi32(v, DecodeTable::kShift)), 4);
  // Step up while cdf[s + 1] <= v (cdf[size] = 65536 > v ends it); after two
  // steps, binary-search the rest of the bucket (last_symbol_at_or_below():
  // calibrated tables can put a hundred rare symbols in one bucket).
  const __m256i one = _mm256_set1_epi32(1);
  __m256i idx = _mm256_add_epi32(cdf_base, s);
  __m256i hi = _mm256_i32gather_epi32(reinterpret_cast<const int*>(cdf), _mm256_add_epi32(idx, one), 4);
  for (int steps = 0;; ++steps) {
    const __m256i step = _mm256_andnot_si256(_mm256_cmpgt_epi32(hi, v), one);  // 1 where hi <= v
    if (_mm256_testz_si256(step, step)) break;
    s = _mm256_add_epi32(s, step);
    if (steps == 2) {
      // Lanes still stepping search (s, bucket[b + 1]]; the others keep s.
      const __m256i bound = _mm256_i32gather_epi32(
          reinterpret_cast<const int*>(bucket),
          _mm256_add_epi32(bucket_base, _mm256_add_epi32(_mm256_srli_epi32(v, DecodeTable::kShift), one)), 4);
      __m256i top = _mm256_blendv_epi8(s, bound, _mm256_cmpeq_epi32(step, one));
      for (;;) {
        const __m256i open = _mm256_cmpgt_epi32(top, s);
        if (_mm256_testz_si256(open, open)) break;
        const __m256i mid = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(s, top), one), 1);
        const __m256i c =
            _mm256_i32gather_epi32(reinterpret_cast<const int*>(cdf), _mm256_add_epi32(cdf_base, mid), 4);
        const __m256i above = _mm256_cmpgt_epi32(c, v);  // cdf[mid] > v: the symbol is below mid
        s = _mm256_blendv_epi8(mid, s, above);
        top = _mm256_blendv_epi8(top, _mm256_sub_epi32(mid, one), above);
      }
      idx = _mm256_add_epi32(cdf_base, s);
      hi = _mm256_i32gather_epi32(reinterpret_cast<const int*>(cdf), _mm256_add_epi32(idx, one), 4);
      break;
    }
    idx = _mm256_add_epi32(idx, step);
    hi = _mm256_i32gather_epi32(reinterpret_cast<const int*>(cdf), _mm256_add_epi32(idx, one), 4);
  }
  const __m256i lo = _mm256_i32gather_epi32(reinterpret_cast<const int*>(cdf), idx, 4);
  L.code = _mm256_sub_epi32(L.code, _mm256_mullo_epi32(r, lo));
  L.range = _mm256_mullo_epi32(r, _mm256_sub_epi32(hi, lo));
  // Renormalise: shift in n = [range < 2^24] + [range < 2^16] bytes, zeros
  // past a lane's end.
  const __m256i zero = _mm256_setzero_si256();
  const __m256i n =
      _mm256_sub_epi32(zero, _mm256_add_epi32(_mm256_cmpeq_epi32(_mm256_srli_epi32(L.range, 24), zero),
                                              _mm256_cmpeq_epi32(_mm256_srli_epi32(L.range, 16), zero)));
  // pos counts reads past the lane's end too (left < 0 there); the load
  // address stays within the lane's bytes and the padding.
  const __m256i left = _mm256_sub_epi32(L.end, L.pos);
  const __m256i w =
      _mm256_i32gather_epi32(reinterpret_cast<const int*>(streams), _mm256_min_epu32(L.pos, L.end), 1);
  const __m256i byte = _mm256_set1_epi32(0xFF);
  const __m256i b0 = _mm256_and_si256(_mm256_and_si256(w, byte), _mm256_cmpgt_epi32(left, zero));
  const __m256i b1 =
      _mm256_and_si256(_mm256_and_si256(_mm256_srli_epi32(w, 8), byte), _mm256_cmpgt_epi32(left, one));
  const __m256i in16 = _mm256_or_si256(_mm256_slli_epi32(b0, 8), b1);
  const __m256i bits = _mm256_slli_epi32(n, 3);
  L.code = _mm256_or_si256(_mm256_sllv_epi32(L.code, bits),
                           _mm256_srlv_epi32(in16, _mm256_sub_epi32(_mm256_set1_epi32(16), bits)));
  L.range = _mm256_sllv_epi32(L.range, bits);
  L.pos = _mm256_add_epi32(L.pos, n);
  return s;
}

// Each lane's Q as the float the decoder multiplies by the step: float(Q),
// or with centroid levels their entry at base + clamp(Q, -M, M).
__attribute__((target("avx2"))) inline __m256 level8(const float* levels, __m256i q, __m256i base,
                                                     __m256i negM, __m256i M) {
  if (!levels) return _mm256_cvtepi32_ps(q);
  const __m256i qc = _mm256_min_epi32(_mm256_max_epi32(q, negM), M);
  return _mm256_i32gather_ps(levels, _mm256_add_epi32(base, qc), 4);
}

}  // namespace

bool simd_decode_enabled() {
  return cpu_has_avx2() && simd_switch().load(std::memory_order_relaxed);
}

void set_simd_decode(bool enabled) {
  simd_switch().store(enabled, std::memory_order_relaxed);
}

__attribute__((target("avx2"))) bool decode_block_avx2(const Block8& b) {
  constexpr int kLanes = 8;
  const int n = b.tokens, G = b.group_size, M = b.M;
  // Tables: anchors of lane j at bucket rows j, deltas at 8 + j (each with
  // its sentinel); cdfs packed.
  constexpr int kRow = DecodeTable::kBuckets + 1;
  alignas(32) std::uint32_t bucket[2 * kLanes * kRow];
  thread_local std::vector<std::uint32_t> cdfs;
  cdfs.clear();
  alignas(32) std::int32_t abase[kLanes], dbase[kLanes], aoff[kLanes], doff[kLanes], raw[kLanes];
  alignas(32) std::uint32_t code0[kLanes], pos0[kLanes], end0[kLanes];
  alignas(32) float cstep[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    abase[j] = j * kRow;
    aoff[j] = std::int32_t(cdfs.size());
    cdfs.insert(cdfs.end(), b.anchor[j]->cdf.begin(), b.anchor[j]->cdf.end());
    fill_buckets(bucket + abase[j], *b.anchor[j], DecodeTable::kShift);
    raw[j] = b.raw[j] ? -1 : 0;
    if (!b.raw[j] && n > 1 && G > 1) {
      dbase[j] = (kLanes + j) * kRow;
      doff[j] = std::int32_t(cdfs.size());
      cdfs.insert(cdfs.end(), b.delta[j]->cdf.begin(), b.delta[j]->cdf.end());
      fill_buckets(bucket + dbase[j], *b.delta[j], DecodeTable::kShift);
    } else {
      dbase[j] = abase[j];
      doff[j] = aoff[j];
    }
    std::uint32_t c = 0, p = b.begin[j];
    for (int i = 0; i < 4; ++i, ++p) c = (c << 8) | (p < b.end[j] ? b.streams[p] : 0u);
    code0[j] = c;
    pos0[j] = p;
    end0[j] = b.end[j];
    cstep[j] = b.step[b.base[j]];
  }
  Lanes L;
  L.code = _mm256_load_si256(reinterpret_cast<const __m256i*>(code0));
  L.range = _mm256_set1_epi32(-1);
  L.pos = _mm256_load_si256(reinterpret_cast<const __m256i*>(pos0));
  L.end = _mm256_load_si256(reinterpret_cast<const __m256i*>(end0));
  const __m256i va_bucket = _mm256_load_si256(reinterpret_cast<const __m256i*>(abase));
  const __m256i vd_bucket = _mm256_load_si256(reinterpret_cast<const __m256i*>(dbase));
  const __m256i va_cdf = _mm256_load_si256(reinterpret_cast<const __m256i*>(aoff));
  const __m256i vd_cdf = _mm256_load_si256(reinterpret_cast<const __m256i*>(doff));
  const __m256i vraw = _mm256_load_si256(reinterpret_cast<const __m256i*>(raw));
  const __m256 vcstep = _mm256_load_ps(cstep);
  const __m256i vM = _mm256_set1_epi32(M), vnegM = _mm256_set1_epi32(-M), v2M = _mm256_set1_epi32(2 * M);
  const __m256 fM = _mm256_set1_ps(float(M)), fnegM = _mm256_set1_ps(-float(M));
  const __m256 kRound = _mm256_set1_ps(12582912.0f);
  const bool shared = b.stride != 0;
  // Version 5: Q -> its level, gathered at lane j * (2M + 1) + clamp(Q) + M
  // (a corrupt Q outside [-M, M] is reported below; the clamp keeps the read
  // inside the levels).
  const float* levels = b.levels;
  alignas(32) std::int32_t lbase[kLanes];
  for (int j = 0; j < kLanes; ++j) lbase[j] = j * (2 * M + 1) + M;
  const __m256i vlbase = _mm256_load_si256(reinterpret_cast<const __m256i*>(lbase));

  const std::uint32_t* cdf = cdfs.data();
  __m256i bad = _mm256_setzero_si256();
  float* row = b.out;
  for (int t0 = 0; t0 < n; t0 += G) {
    const float sa = shared ? b.step[b.base[0] + t0 * b.stride] : 0.0f;
    const __m256i qa = _mm256_sub_epi32(decode8(L, bucket, va_bucket, cdf, va_cdf, b.streams), vM);
    _mm256_storeu_ps(
        row, _mm256_mul_ps(level8(levels, qa, vlbase, vnegM, vM), shared ? _mm256_set1_ps(sa) : vcstep));
    row += b.out_stride;
    const __m256 fqa = _mm256_cvtepi32_ps(qa);
    const int tend = t0 + G < n ? t0 + G : n;
    for (int t = t0 + 1; t < tend; ++t) {
      const float st = shared ? b.step[b.base[0] + t * b.stride] : 0.0f;
      const float ratio = shared ? anchor_ratio(sa, st) : 1.0f;
      // predict_from_anchor(), lane-parallel: clamp, then round half-even.
      __m256 x = _mm256_mul_ps(fqa, _mm256_set1_ps(ratio));
      x = _mm256_min_ps(_mm256_max_ps(x, fnegM), fM);
      const __m256i pred = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(x, kRound), kRound));
      const __m256i pbase = _mm256_blendv_epi8(_mm256_sub_epi32(pred, v2M), vnegM, vraw);
      const __m256i q = _mm256_add_epi32(pbase, decode8(L, bucket, vd_bucket, cdf, vd_cdf, b.streams));
      bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi32(vnegM, q), _mm256_cmpgt_epi32(q, vM)));
      _mm256_storeu_ps(
          row, _mm256_mul_ps(level8(levels, q, vlbase, vnegM, vM), shared ? _mm256_set1_ps(st) : vcstep));
      row += b.out_stride;
    }
  }
  if (b.ends) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.ends->read), L.pos);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.ends->code), L.code);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.ends->range), L.range);
  }
  return _mm256_testz_si256(bad, bad) != 0;
}

}  // namespace kvscope::codec::detail::cachegen
