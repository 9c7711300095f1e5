// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/stage_analysis.h"

#include <cmath>

#include "cachegen_internal.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec {

StageAnalysis analyze_stages(const kv::KVCache& cache, const ParamSet& params, const EncodeOptions& options) {
  using namespace detail;
  using namespace detail::cachegen;
  const Codec& codec = find_codec("cachegen");
  const auto& sh = cache.shape();
  const Params p("cachegen", codec.params(&sh), cachegen::complete_layer_splits(params, sh.layers));
  const Layout L = encoding_layout(p, cache);
  kv::KVCache pre_rope;
  const kv::KVCache& coded = coding_cache(cache, L, pre_rope);

  StageAnalysis a;
  a.encoded = codec.encode(cache, params, options);
  const std::size_t LK = std::size_t(sh.layers) * 2;
  for (StageBits* s : {&a.fp16, &a.quantized_fixed, &a.raw_entropy, &a.delta_entropy, &a.coded})
    s->per_layer.assign(LK, 0.0);
  const double per_lk = double(sh.tensor_elements());
  const int C = L.channels;
  parallel_for(LK, options.threads, [&](std::size_t lk) {
    const int l = int(lk / 2), k = int(lk % 2);
    const int A = L.anchor_alphabet(l, k), B = L.delta_alphabet(l, k);
    // One quantization gives both: the raw symbols (every token an anchor)
    // and the anchor/delta symbols (steps do not depend on the anchor groups).
    std::vector<std::uint64_t> rc(std::size_t(C) * A);
    std::vector<std::uint64_t> ac(std::size_t(C) * A), dc(std::size_t(C) * B);
    for (int b = 0; b < sh.tokens; b += L.chunk_tokens) {
      const int n = std::min(L.chunk_tokens, sh.tokens - b);
      const ChunkSymbols cs = quantize_chunk(coded, l, kv::Kind(k), b, n, L, &cache);
      count_raw(cs, L, l, k, rc);
      count_symbols(cs, L, l, k, ac, dc);
    }
    double raw_bits = 0, delta_bits = 0;
    for (int c = 0; c < C; ++c) {
      raw_bits += entropy_bits({rc.data() + std::size_t(c) * A, std::size_t(A)});
      delta_bits += entropy_bits({ac.data() + std::size_t(c) * A, std::size_t(A)}) +
                    entropy_bits({dc.data() + std::size_t(c) * B, std::size_t(B)});
    }
    // Float deltas quantize other values than raw coding would: no raw stage.
    if (L.delta_mode == Layout::DeltaMode::Float) raw_bits = delta_bits;
    a.fp16.per_layer[lk] = 16;
    a.quantized_fixed.per_layer[lk] = std::log2(double(L.bins[k][l]));
    a.raw_entropy.per_layer[lk] = per_lk > 0 ? raw_bits / per_lk : 0;
    a.delta_entropy.per_layer[lk] = per_lk > 0 ? delta_bits / per_lk : 0;
    a.coded.per_layer[lk] = per_lk > 0 ? 8.0 * double(a.encoded.size.layer_bytes[lk]) / per_lk : 0;
  });
  for (StageBits* s : {&a.fp16, &a.quantized_fixed, &a.raw_entropy, &a.delta_entropy}) {
    double sum = 0;
    for (double v : s->per_layer) sum += v;
    s->overall = LK ? sum / double(LK) : 0;
  }
  a.coded.overall = a.encoded.size.bits_per_element();
  a.coded_payload = a.encoded.size.elements
                        ? 8.0 * double(a.encoded.size.payload_bytes) / double(a.encoded.size.elements)
                        : 0;
  return a;
}

}  // namespace kvscope::codec
