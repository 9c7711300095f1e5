// SPDX-License-Identifier: Apache-2.0
// The decoder forward pass in libtorch: load weights from a WeightSource,
// prefill (capturing K/V), continue from a supplied cache. One pass serves
// every supported architecture; the differences (QK norms, Gemma's extra
// norms, soft-capping, sliding windows, per-layer RoPE) are flags in
// ModelConfig read from the file.
#include "kvscope/model/model.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numbers>
#include <thread>

#include "kvscope/common/error.h"
#include "kvscope/io/ggml_types.h"
#include "weight_matrix.h"
#include "weight_source.h"

namespace kvscope::model {
namespace {

using detail::RowBlock;
using detail::WeightMatrix;
using torch::Tensor;

// Attention scores of one query block are at most this many floats (256 MB),
// so long contexts never materialise a full T x T matrix per head.
constexpr std::int64_t kScoreBudget = 64ll << 20;
// Query rows per attention block.
constexpr std::int64_t kQueryBlock = 256;
// Output-projection rows dequantized at a time when weights stay in the
// file's type (the vocabulary can be 256k rows).
constexpr std::int64_t kOutputChunkValues = 16ll << 20;

struct Layer {
  Tensor attn_norm, q_norm, k_norm, post_attn_norm, ffn_norm, post_ffw_norm, bqkv;
  WeightMatrix wqkv, wo, wgu, wdown;
  int window = 0;    // 0 = full attention
  int rope_set = 0;  // index into Impl::rope_sets
};

struct LayerKV {
  Tensor k, v;  // [kv_heads, tokens, head_dim], keys after RoPE
};

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Tensor rms_norm(const Tensor& x, const Tensor& w, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// HF's rotate_half convention: pairs (i, i + d/2).
Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const auto half = x.size(-1) / 2;
  const Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return x * cos + torch::cat({-x2, x1}, -1) * sin;
}

// llama.cpp stores Q/K rows permuted for interleaved RoPE; undo it (for
// biases; matrices are un-permuted as they are dequantized).
Tensor unpermute_rows(const Tensor& w, std::int64_t heads) {
  const auto rows = w.size(0);
  const auto hd = rows / heads;
  return w.view({heads, hd / 2, 2}).transpose(1, 2).reshape({rows}).contiguous();
}

Tensor softcap(const Tensor& x, double cap) {
  return torch::tanh(x / cap) * cap;
}

// Inverse RoPE frequencies of a base, with the config's scaling.
std::vector<double> rope_frequencies(const ModelConfig& c, double theta, bool scaled) {
  const auto half = c.head_dim / 2;
  std::vector<double> f(static_cast<std::size_t>(half));
  for (int i = 0; i < half; ++i) f[i] = 1.0 / std::pow(theta, (2.0 * i) / c.head_dim);
  if (!scaled) return f;
  if (c.rope_scaling_type == "linear" && c.rope_scaling_factor > 0) {
    for (auto& v : f) v /= c.rope_scaling_factor;
  } else if (c.rope_scaling_type == "llama3") {
    const double old_ctx = c.rope_original_context, lo = c.rope_low_freq_factor, hi = c.rope_high_freq_factor;
    const double low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
    for (auto& v : f) {
      const double wavelen = 2 * std::numbers::pi / v;
      if (wavelen > low_wavelen) {
        v /= c.rope_scaling_factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
        v = (1 - smooth) * v / c.rope_scaling_factor + smooth * v;
      }
    }
  }
  if (!c.rope_short_factors.empty()) {
    for (int i = 0; i < half; ++i) f[i] /= c.rope_short_factors[i];
  }
  return f;
}

}  // namespace

struct Model::Impl {
  ModelConfig cfg;
  std::unique_ptr<Tokenizer> tok;
  torch::Device device{torch::kCPU};
  // Kept while weights are views of the file (weight_storage "file").
  std::unique_ptr<detail::WeightSource> source;
  WeightMatrix embd, out_w;  // out_w unused when tied (embd serves)
  Tensor out_norm;
  std::vector<Layer> layers;
  // RoPE inverse frequencies: set 0 for full-attention layers, set 1 for
  // sliding layers when their base differs (Gemma 3).
  std::vector<std::vector<double>> rope_sets;
  std::int64_t scratch_values = 0;  // largest stored matrix (0: all resident)
  double attn_scale = 1.0;
  mutable std::mutex sha_mutex;
  mutable std::string sha;

  const WeightMatrix& output() const { return cfg.tied_embeddings ? embd : out_w; }

  // cos/sin tables [T, head_dim] for absolute positions.
  std::pair<Tensor, Tensor> rope_tables(const std::vector<double>& inv_freq,
                                        const std::vector<std::int64_t>& positions) const {
    const auto half = static_cast<std::int64_t>(inv_freq.size());
    const auto T = static_cast<std::int64_t>(positions.size());
    std::vector<float> c(static_cast<std::size_t>(T * half * 2)), s(c.size());
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t i = 0; i < half; ++i) {
        const double a = static_cast<double>(positions[t]) * inv_freq[i];
        const float cv = static_cast<float>(std::cos(a)), sv = static_cast<float>(std::sin(a));
        c[t * 2 * half + i] = c[t * 2 * half + i + half] = cv;
        s[t * 2 * half + i] = s[t * 2 * half + i + half] = sv;
      }
    }
    auto opts = torch::TensorOptions().dtype(torch::kFloat32);
    return {torch::from_blob(c.data(), {T, 2 * half}, opts).clone().to(device),
            torch::from_blob(s.data(), {T, 2 * half}, opts).clone().to(device)};
  }

  // Causal attention of q [heads, T, hd] over K/V [kv_heads, S, hd] whose last
  // T entries are the queries' own; query row r sees keys 0..S-T+r, or only
  // the last `window` of them. With `drawn` ([past] floats), adds the weight
  // every query row of every head puts on each of the `past` keys before the
  // queries' own.
  Tensor attention(const Tensor& q, const Tensor& K, const Tensor& V, int window,
                   Tensor* drawn = nullptr) const {
    const auto nh = q.size(0), T = q.size(1), hd = q.size(2);
    const auto nkv = K.size(0), S = K.size(1), g = nh / nkv, past = S - T;
    const Tensor qg = q.reshape({nkv, g, T, hd});
    Tensor out = torch::empty({nkv, g, T, hd}, q.options());
    // Small query blocks let each block stop at its last causal key (and, with
    // a window, start at its first), which skips most of a full T x S product.
    const std::int64_t block = std::clamp<std::int64_t>(
        std::min<std::int64_t>(kQueryBlock, kScoreBudget / std::max<std::int64_t>(1, nh * S)), 1, T);
    const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device);
    for (std::int64_t r0 = 0; r0 < T; r0 += block) {
      const auto B = std::min(block, T - r0);
      const auto S_lim = past + r0 + B;
      const auto S_lo = window > 0 ? std::max<std::int64_t>(0, past + r0 - window + 1) : 0;
      const auto S_n = S_lim - S_lo;
      const Tensor qb = qg.narrow(2, r0, B).reshape({nkv, g * B, hd});
      Tensor scores = torch::bmm(qb, K.narrow(1, S_lo, S_n).transpose(1, 2)).mul_(attn_scale);
      if (cfg.attn_softcap > 0) scores = softcap(scores, cfg.attn_softcap);
      // Key j is masked for row b when j > past + r0 + b (future) or, with a
      // window, when j <= past + r0 + b - window.
      const Tensor rows = torch::arange(past + r0, past + r0 + B, long_opts);
      const Tensor cols = torch::arange(S_lo, S_lim, long_opts);
      Tensor mask = cols.unsqueeze(0) > rows.unsqueeze(1);  // [B, S_n]
      if (window > 0) mask = mask.logical_or(cols.unsqueeze(0) <= rows.unsqueeze(1) - window);
      scores.view({nkv, g, B, S_n}).masked_fill_(mask, -std::numeric_limits<float>::infinity());
      const Tensor p = torch::softmax(scores, -1);
      if (drawn && past > S_lo)
        drawn->narrow(0, S_lo, past - S_lo)
            .add_(p.narrow(2, 0, past - S_lo).sum(std::vector<std::int64_t>{0, 1}));
      const Tensor ob = torch::bmm(p, V.narrow(1, S_lo, S_n));  // [nkv, g*B, hd]
      out.narrow(2, r0, B).copy_(ob.view({nkv, g, B, hd}));
    }
    return out.view({nh, T, hd}).transpose(0, 1).reshape({T, nh * hd});
  }

  Tensor new_scratch() const {
    return scratch_values > 0 ? torch::empty({scratch_values}, torch::kFloat32) : Tensor();
  }

  // Logits of the rows of h (already normalised), soft-capped when the model says so.
  Tensor logits(const Tensor& h, Tensor& scratch) const {
    const WeightMatrix& w = output();
    Tensor out;
    if (w.resident()) {
      out = torch::mm(h, w.in_out());
    } else {
      out = torch::empty({h.size(0), w.rows()}, h.options());
      const std::int64_t chunk = std::max<std::int64_t>(1, scratch.numel() / w.cols());
      for (std::int64_t r0 = 0; r0 < w.rows(); r0 += chunk) {
        const auto n = std::min(chunk, w.rows() - r0);
        out.narrow(1, r0, n).copy_(w.apply_rows(h, r0, n, scratch));
      }
    }
    return cfg.final_softcap > 0 ? softcap(out, cfg.final_softcap) : out;
  }

  // Runs `ids` at positions pos0.. after the K/V in `kv` (appending to it).
  // Returns logits for every row (all_logits) or the last row only.
  Tensor forward(const std::vector<std::int32_t>& ids, std::int64_t pos0, std::vector<LayerKV>& kv,
                 std::vector<Tensor>* pre_rope, bool all_logits, const ProgressFn& progress,
                 std::vector<Tensor>* drawn = nullptr, std::vector<Tensor>* query_energy = nullptr) const {
    const auto T = static_cast<std::int64_t>(ids.size());
    const auto nh = cfg.heads, nkv = cfg.kv_heads, hd = cfg.head_dim, I = cfg.intermediate;
    std::vector<std::int64_t> ids64(ids.begin(), ids.end());
    Tensor scratch = new_scratch();
    Tensor x = embd.rows_of(ids64);
    if (cfg.embedding_scale != 1.0) x = x * cfg.embedding_scale;
    std::vector<std::int64_t> positions(static_cast<std::size_t>(T));
    for (std::int64_t t = 0; t < T; ++t) positions[t] = pos0 + t;
    std::vector<std::pair<Tensor, Tensor>> rope(rope_sets.size());
    for (std::size_t i = 0; i < rope_sets.size(); ++i) rope[i] = rope_tables(rope_sets[i], positions);
    for (int l = 0; l < cfg.layers; ++l) {
      const Layer& L = layers[l];
      const Tensor h = rms_norm(x, L.attn_norm, cfg.rms_eps);
      Tensor qkv = L.wqkv.apply(h, scratch);
      if (L.bqkv.defined()) qkv = qkv + L.bqkv;
      Tensor q = qkv.narrow(1, 0, nh * hd).view({T, nh, hd}).transpose(0, 1);
      Tensor k = qkv.narrow(1, nh * hd, nkv * hd).view({T, nkv, hd}).transpose(0, 1);
      Tensor v = qkv.narrow(1, (nh + nkv) * hd, nkv * hd).view({T, nkv, hd}).transpose(0, 1);
      if (cfg.qk_norm) {
        q = rms_norm(q, L.q_norm, cfg.rms_eps);
        k = rms_norm(k, L.k_norm, cfg.rms_eps);
      }
      if (pre_rope) pre_rope->push_back(k.contiguous());
      // Sum over tokens of each query channel's square, before RoPE ([heads, hd]).
      if (query_energy) query_energy->push_back(q.square().sum(1));
      const auto& [cos, sin] = rope[static_cast<std::size_t>(L.rope_set)];
      q = apply_rope(q, cos, sin);
      k = apply_rope(k, cos, sin);
      auto& c = kv[l];
      c.k = c.k.defined() ? torch::cat({c.k, k}, 1) : k.contiguous();
      c.v = c.v.defined() ? torch::cat({c.v, v}, 1) : v.contiguous();
      Tensor a = L.wo.apply(attention(q, c.k, c.v, L.window, drawn ? &(*drawn)[l] : nullptr), scratch);
      if (cfg.sandwich_norms) a = rms_norm(a, L.post_attn_norm, cfg.rms_eps);
      x = x + a;
      const Tensor h2 = rms_norm(x, L.ffn_norm, cfg.rms_eps);
      const Tensor gu = L.wgu.apply(h2, scratch);
      const Tensor gate =
          cfg.gelu ? torch::gelu(gu.narrow(1, 0, I), "tanh") : torch::silu(gu.narrow(1, 0, I));
      Tensor m = L.wdown.apply(gate * gu.narrow(1, I, I), scratch);
      if (cfg.sandwich_norms) m = rms_norm(m, L.post_ffw_norm, cfg.rms_eps);
      x = x + m;
      report_progress(progress, static_cast<double>(l + 1) / cfg.layers,
                      "layer " + std::to_string(l + 1) + "/" + std::to_string(cfg.layers));
    }
    const Tensor last = all_logits ? x : x.narrow(0, T - 1, 1);
    return logits(rms_norm(last, out_norm, cfg.rms_eps), scratch);
  }

  // ChannelWeights (model.h) from the per-layer query energies forward()
  // summed over `T` tokens, and the output projections' columns.
  ChannelWeights channel_weights(const std::vector<Tensor>& query_energy, int T) const {
    const auto nh = cfg.heads, nkv = cfg.kv_heads, hd = cfg.head_dim, g = nh / nkv;
    ChannelWeights w;
    w.key.reserve(std::size_t(cfg.layers) * nkv * hd);
    w.value.reserve(w.key.capacity());
    for (int l = 0; l < cfg.layers; ++l) {
      // Keys: the group's query heads, then both dimensions of a RoPE pair
      // (rotation mixes them, so they share one weight).
      Tensor qe = query_energy[std::size_t(l)].to(torch::kCPU).to(torch::kFloat64).view({nkv, g, hd}).sum(1);
      if (hd % 2 == 0) {
        const Tensor pair = qe.narrow(1, 0, hd / 2) + qe.narrow(1, hd / 2, hd / 2);
        qe = torch::cat({pair, pair}, 1);
      }
      qe = (qe / double(std::max(T, 1))).contiguous();
      const double* pk = qe.data_ptr<double>();
      w.key.insert(w.key.end(), pk, pk + nkv * hd);
      // Values: squared norms of the output projection's columns, summed over
      // the query heads that read this KV head.
      const WeightMatrix& wo = layers[std::size_t(l)].wo;
      std::vector<double> col(std::size_t(nh * hd), 0.0);
      const std::int64_t rows_at_once = std::max<std::int64_t>(1, (1 << 20) / wo.cols());
      std::vector<float> buf;
      for (std::int64_t r0 = 0; r0 < wo.rows(); r0 += rows_at_once) {
        const auto n = std::min(rows_at_once, wo.rows() - r0);
        buf.resize(std::size_t(n * wo.cols()));
        if (wo.resident()) {
          const Tensor part = wo.in_out().narrow(1, r0, n).t().contiguous().to(torch::kCPU);
          std::memcpy(buf.data(), part.data_ptr<float>(), buf.size() * sizeof(float));
        } else {
          wo.dequantize(r0, n, buf.data());
        }
        for (std::int64_t r = 0; r < n; ++r)
          for (std::int64_t c = 0; c < wo.cols(); ++c) {
            const double x = buf[std::size_t(r * wo.cols() + c)];
            col[std::size_t(c)] += x * x;
          }
      }
      for (std::int64_t h = 0; h < nkv; ++h)
        for (std::int64_t d = 0; d < hd; ++d) {
          double s = 0;
          for (std::int64_t j = 0; j < g; ++j) s += col[std::size_t(((h * g + j) * hd) + d)];
          w.value.push_back(float(s));
        }
    }
    return w;
  }

  void check_tokens(std::span<const std::int32_t> tokens) const {
    for (auto t : tokens) {
      if (t < 0 || t >= cfg.vocab) {
        throw Error(ErrorCode::InvalidArgument, "token id " + std::to_string(t) +
                                                    " is outside the vocabulary (" +
                                                    std::to_string(cfg.vocab) + ")");
      }
    }
  }

  // Torch K/V from a KVCache (rotating keys when they are stored before RoPE).
  std::vector<LayerKV> from_cache(const kv::KVCache& cache, std::int64_t& next_pos) const {
    const auto& s = cache.shape();
    std::vector<LayerKV> kv(static_cast<std::size_t>(cfg.layers));
    if (s.tokens == 0 && (s.layers == 0 || s.layers == cfg.layers)) {
      next_pos = cache.info.positions.empty() ? 0 : cache.info.positions.back() + 1;
      return kv;
    }
    if (s.layers != cfg.layers || s.kv_heads != cfg.kv_heads || s.head_dim != cfg.head_dim) {
      throw Error(ErrorCode::InvalidArgument,
                  "cache shape (layers " + std::to_string(s.layers) + ", kv_heads " +
                      std::to_string(s.kv_heads) + ", head_dim " + std::to_string(s.head_dim) +
                      ") does not match model " + cfg.name + " (" + std::to_string(cfg.layers) + ", " +
                      std::to_string(cfg.kv_heads) + ", " + std::to_string(cfg.head_dim) + ")");
    }
    if (!cache.info.positions.empty() && static_cast<int>(cache.info.positions.size()) != s.tokens) {
      throw Error(ErrorCode::InvalidArgument, "cache has " + std::to_string(cache.info.positions.size()) +
                                                  " positions for " + std::to_string(s.tokens) + " tokens");
    }
    std::vector<std::int64_t> positions(static_cast<std::size_t>(s.tokens));
    for (int t = 0; t < s.tokens; ++t)
      positions[t] = cache.info.positions.empty() ? t : cache.info.positions[t];
    next_pos = positions.back() + 1;
    std::vector<std::pair<Tensor, Tensor>> rope(rope_sets.size());
    if (!cache.info.rope_applied) {
      for (std::size_t i = 0; i < rope_sets.size(); ++i) rope[i] = rope_tables(rope_sets[i], positions);
    }
    for (int l = 0; l < cfg.layers; ++l) {
      auto load = [&](kv::Kind kind) {
        auto span = cache.tensor(l, kind);
        return torch::from_blob(const_cast<float*>(span.data()), {s.kv_heads, s.tokens, s.head_dim},
                                torch::kFloat32)
            .clone()
            .to(device);
      };
      kv[l].k = load(kv::Kind::Key);
      kv[l].v = load(kv::Kind::Value);
      if (!cache.info.rope_applied) {
        const auto& [cos, sin] = rope[static_cast<std::size_t>(layers[l].rope_set)];
        kv[l].k = apply_rope(kv[l].k, cos, sin).contiguous();
      }
    }
    return kv;
  }

  kv::KVCache make_cache(int tokens) const {
    kv::KVCache c(kv::CacheShape{cfg.layers, cfg.kv_heads, tokens, cfg.head_dim});
    c.info.model_name = cfg.name;
    c.info.architecture = cfg.architecture;
    {
      std::lock_guard lock(sha_mutex);
      c.info.model_sha256 = sha;
    }
    c.info.rope_theta = cfg.rope_theta;
    // The frequencies this runtime rotates keys with, so codecs can remove and
    // re-apply RoPE exactly as the model did (kvscope/kv/rope.h).
    c.info.rope_inv_freq.reserve(static_cast<std::size_t>(cfg.layers));
    for (const auto& L : layers)
      c.info.rope_inv_freq.push_back(rope_sets[static_cast<std::size_t>(L.rope_set)]);
    // Sliding-window layers (empty when every layer attends to all tokens).
    if (cfg.has_sliding_window())
      c.info.layer_window.assign(cfg.layer_window.begin(), cfg.layer_window.end());
    return c;
  }
};

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::filesystem::path& path, const LoadOptions& options) {
  // Matrix products dominate prefill and run on OpenBLAS's own threads (all
  // cores). Torch's OpenMP threads, when also set to all cores, spin-wait
  // against those BLAS threads: 2048 tokens took 9.1 s that way and 5.4 s with
  // one intra-op thread on a 2-core machine (see docs/performance.md).
  torch::set_num_threads(options.threads > 0 ? options.threads : 1);
  torch::Device device(torch::kCPU);
  if (options.device == "cuda" || options.device == "auto") {
    if (torch::cuda::is_available()) {
      device = torch::Device(torch::kCUDA);
    } else if (options.device == "cuda") {
      throw Error(ErrorCode::InvalidArgument,
                  "device 'cuda' requested but this libtorch has no usable CUDA device");
    }
  } else if (options.device != "cpu") {
    throw Error(ErrorCode::InvalidArgument, "unknown device '" + options.device + "' (auto, cpu or cuda)");
  }
  if (options.weights != "auto" && options.weights != "float32" && options.weights != "file") {
    throw Error(ErrorCode::InvalidArgument,
                "unknown weight storage '" + options.weights + "' (auto, float32 or file)");
  }
  report_progress(options.progress, 0.0, "reading header");
  detail::OpenedModel opened = detail::open_model(path);
  auto model = std::unique_ptr<Model>(new Model());
  auto& im = *model->impl_;
  im.cfg = std::move(opened.config);
  im.device = device;
  im.tok = std::make_unique<Tokenizer>(std::move(opened.tokenizer));
  auto& c = im.cfg;
  const auto& src = *opened.weights;
  const std::string label = src.label();
  c10::InferenceMode guard;

  const bool resident = options.weights == "float32" ||
                        (options.weights == "auto" && c.parameter_count * 4 <= options.float32_budget_bytes);
  c.weight_storage = resident ? "float32" : "file";
  c.tensor_types = src.tensor_types();
  c.file_weight_bytes = src.stored_bytes();

  const int total = c.layers * 9 + 3;
  int done = 0;
  auto step = [&](const std::string& name) {
    report_progress(options.progress, std::min(1.0, static_cast<double>(++done) / total), "loading " + name);
  };
  auto check_shape = [&](const std::string& name, const std::vector<std::int64_t>& expect) {
    const auto shape = src.shape(name);
    if (shape != expect) {
      throw Error(
          ErrorCode::Format, label,
          "tensor '" + name + "' has shape " + shape_text(shape) + ", expected " + shape_text(expect));
    }
  };
  // A small tensor (norm, bias) as float32.
  auto vec = [&](const std::string& name, std::int64_t n) {
    check_shape(name, {n});
    Tensor t = torch::empty({n}, torch::kFloat32);
    src.read(name, std::span<float>(t.data_ptr<float>(), static_cast<std::size_t>(n)));
    step(name);
    return t;
  };
  // A matrix stacked from parts {name, rows taken from it (0 = all), first
  // row, un-permute heads}; each part's full shape is checked.
  struct Part {
    std::string name;
    std::int64_t rows;
    int unpermute_heads = 0;
    std::int64_t src_row0 = 0;
    std::int64_t src_rows = 0;  // the stored tensor's rows (0 = rows)
  };
  const std::int64_t H = c.hidden, nh = c.heads, nkv = c.kv_heads, hd = c.head_dim, I = c.intermediate;
  std::int64_t held = 0;
  auto matrix = [&](const std::vector<Part>& parts, std::int64_t cols, bool in_out_layout = true) {
    std::vector<RowBlock> blocks;
    std::int64_t rows = 0;
    for (const auto& p : parts) {
      check_shape(p.name, {p.src_rows ? p.src_rows : p.rows, cols});
      RowBlock b;
      b.src = src.stored(p.name);
      b.src_row0 = p.src_row0;
      b.rows = p.rows;
      b.dst_row0 = rows;
      b.unpermute_heads = p.unpermute_heads;
      rows += p.rows;
      blocks.push_back(b);
    }
    WeightMatrix m(rows, cols, std::move(blocks), resident, device, in_out_layout);
    if (!m.resident()) im.scratch_values = std::max(im.scratch_values, m.elements());
    held += m.held_bytes();
    step(parts.front().name);
    return m;
  };

  im.embd = matrix({{"token_embd", c.vocab}}, H, /*in_out_layout=*/false);
  im.out_norm = vec("output_norm", H).to(device);
  if (!c.tied_embeddings) im.out_w = matrix({{"output", c.vocab}}, H, false);
  if (!im.output().resident()) {
    // The output projection runs in chunks of rows through the same scratch.
    im.scratch_values = std::max(im.scratch_values, std::min<std::int64_t>(c.vocab * H, kOutputChunkValues));
  }
  const int perm = src.qk_interleaved() ? 1 : 0;
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer L;
    L.attn_norm = vec(p + "attn_norm", H).to(device);
    if (src.has(p + "attn_qkv")) {
      const std::int64_t all = (nh + 2 * nkv) * hd;
      L.wqkv = matrix({{p + "attn_qkv", all}}, H);
    } else {
      L.wqkv = matrix({{p + "attn_q", nh * hd, perm * static_cast<int>(nh)},
                       {p + "attn_k", nkv * hd, perm * static_cast<int>(nkv)},
                       {p + "attn_v", nkv * hd}},
                      H);
    }
    if (c.qkv_bias) {
      Tensor bq = vec(p + "attn_q.bias", nh * hd), bk = vec(p + "attn_k.bias", nkv * hd);
      const Tensor bv = vec(p + "attn_v.bias", nkv * hd);
      if (perm) {
        bq = unpermute_rows(bq, nh);
        bk = unpermute_rows(bk, nkv);
      }
      L.bqkv = torch::cat({bq, bk, bv}, 0).to(device);
    }
    if (c.qk_norm) {
      L.q_norm = vec(p + "attn_q_norm", hd).to(device);
      L.k_norm = vec(p + "attn_k_norm", hd).to(device);
    }
    L.wo = matrix({{p + "attn_output", H}}, nh * hd);
    if (c.sandwich_norms) L.post_attn_norm = vec(p + "post_attention_norm", H).to(device);
    L.ffn_norm = vec(p + "ffn_norm", H).to(device);
    if (src.has(p + "ffn_gate")) {
      L.wgu = matrix({{p + "ffn_gate", I}, {p + "ffn_up", I}}, H);
    } else {
      L.wgu = matrix({{p + "ffn_up", 2 * I}}, H);  // gate and up stacked (Phi-3)
    }
    L.wdown = matrix({{p + "ffn_down", H}}, I);
    if (c.sandwich_norms) L.post_ffw_norm = vec(p + "post_ffw_norm", H).to(device);
    L.window = c.layer_window.empty() ? 0 : c.layer_window[static_cast<std::size_t>(l)];
    L.rope_set = L.window > 0 && c.rope_local_theta > 0 ? 1 : 0;
    im.layers.push_back(std::move(L));
  }

  // Rotary frequencies, with the file's scaling (sliding layers of Gemma 3
  // use their own base, unscaled).
  im.rope_sets.push_back(rope_frequencies(c, c.rope_theta, true));
  if (const auto factors = src.rope_freq_factors(); !factors.empty()) {
    const auto half = c.head_dim / 2;
    if (static_cast<int>(factors.size()) != half) {
      throw Error(
          ErrorCode::Format, label,
          "rope_freqs has " + std::to_string(factors.size()) + " entries, expected " + std::to_string(half));
    }
    for (int i = 0; i < half; ++i) im.rope_sets[0][i] /= factors[i];
    if (im.cfg.rope_scaling_type.empty()) im.cfg.rope_scaling_type = "llama3";
  }
  if (c.rope_local_theta > 0) im.rope_sets.push_back(rope_frequencies(c, c.rope_local_theta, false));
  // Query scale; Phi-3's LongRoPE factor multiplies cos and sin of both q and
  // k in the reference, i.e. the scores by its square: applied here so the
  // cached keys stay a pure rotation.
  im.attn_scale = (c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt(static_cast<double>(hd))) *
                  c.rope_attn_factor * c.rope_attn_factor;

  std::int64_t small = 0;  // norms and biases
  for (const auto& L : im.layers) {
    for (const Tensor* t :
         {&L.attn_norm, &L.q_norm, &L.k_norm, &L.post_attn_norm, &L.ffn_norm, &L.post_ffw_norm, &L.bqkv})
      if (t->defined()) small += t->numel() * 4;
  }
  c.resident_weight_bytes = held + small + H * 4;
  if (!resident) im.source = std::move(opened.weights);  // the matrices view its mapping
  if (options.hash_file) im.sha = model_file_sha256(c.path);
  report_progress(options.progress, 1.0, "loaded");
  return model;
}

std::vector<double> Model::rope_inv_freq(int layer) const {
  if (layer < 0 || layer >= impl_->cfg.layers)
    throw Error(ErrorCode::InvalidArgument, "layer " + std::to_string(layer) + " out of range");
  return impl_->rope_sets[static_cast<std::size_t>(impl_->layers[layer].rope_set)];
}

const ModelConfig& Model::config() const {
  return impl_->cfg;
}
const Tokenizer& Model::tokenizer() const {
  return *impl_->tok;
}
std::string Model::device() const {
  return impl_->device.is_cuda() ? "cuda" : "cpu";
}
int Model::threads() const {
  return torch::get_num_threads();
}

std::string Model::file_sha256() const {
  std::lock_guard lock(impl_->sha_mutex);
  if (impl_->sha.empty()) impl_->sha = model_file_sha256(impl_->cfg.path);
  return impl_->sha;
}

PrefillResult Model::prefill(std::span<const std::int32_t> tokens, const PrefillOptions& options) const {
  const auto& im = *impl_;
  if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "prefill needs at least one token");
  im.check_tokens(tokens);
  const auto start = std::chrono::steady_clock::now();
  c10::InferenceMode guard;
  const int T = static_cast<int>(tokens.size());
  std::vector<LayerKV> kv(static_cast<std::size_t>(im.cfg.layers));
  std::vector<Tensor> pre;
  const std::vector<std::int32_t> ids(tokens.begin(), tokens.end());
  report_progress(options.progress, 0.0, "prefill");
  std::vector<Tensor> query_energy;
  const Tensor logits =
      im.forward(ids, 0, kv, options.keep_pre_rope_keys ? &pre : nullptr, false, options.progress, nullptr,
                 options.measure_channel_weights ? &query_energy : nullptr);

  PrefillResult r;
  r.cache = im.make_cache(T);
  r.cache.info.token_ids = ids;
  r.cache.info.positions.resize(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t) r.cache.info.positions[t] = t;
  r.cache.info.rope_applied = true;
  auto copy_into = [](const Tensor& src, std::span<float> dst) {
    const Tensor c = src.to(torch::kCPU).contiguous();
    std::memcpy(dst.data(), c.data_ptr<float>(), dst.size() * sizeof(float));
  };
  for (int l = 0; l < im.cfg.layers; ++l) {
    copy_into(kv[l].k, r.cache.tensor(l, kv::Kind::Key));
    copy_into(kv[l].v, r.cache.tensor(l, kv::Kind::Value));
  }
  if (options.keep_pre_rope_keys) {
    kv::KVCache p = r.cache;
    p.info.rope_applied = false;
    for (int l = 0; l < im.cfg.layers; ++l) copy_into(pre[l], p.tensor(l, kv::Kind::Key));
    r.pre_rope = std::move(p);
  }
  if (options.measure_channel_weights) r.channel_weights = im.channel_weights(query_energy, T);
  if (options.want_last_logits) {
    const Tensor lg = logits.to(torch::kCPU).contiguous();
    r.last_logits.assign(lg.data_ptr<float>(), lg.data_ptr<float>() + lg.numel());
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::vector<float> Model::continue_logits(const kv::KVCache& cache,
                                          std::span<const std::int32_t> tokens) const {
  const auto& im = *impl_;
  if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "continue_logits needs at least one token");
  im.check_tokens(tokens);
  c10::InferenceMode guard;
  std::int64_t pos0 = 0;
  auto kv = im.from_cache(cache, pos0);
  const std::vector<std::int32_t> ids(tokens.begin(), tokens.end());
  const Tensor lg = im.forward(ids, pos0, kv, nullptr, true, {}).to(torch::kCPU).contiguous();
  return std::vector<float>(lg.data_ptr<float>(), lg.data_ptr<float>() + lg.numel());
}

std::vector<float> Model::attention_to_cache(const kv::KVCache& cache,
                                             std::span<const std::int32_t> tokens) const {
  const auto& im = *impl_;
  if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "attention_to_cache needs at least one token");
  im.check_tokens(tokens);
  c10::InferenceMode guard;
  std::int64_t pos0 = 0;
  auto kv = im.from_cache(cache, pos0);
  const std::int64_t past = cache.shape().tokens;
  std::vector<Tensor> drawn;
  for (int l = 0; l < im.cfg.layers; ++l)
    drawn.push_back(torch::zeros({past}, torch::TensorOptions().dtype(torch::kFloat32).device(im.device)));
  const std::vector<std::int32_t> ids(tokens.begin(), tokens.end());
  im.forward(ids, pos0, kv, nullptr, false, {}, &drawn);
  const double rows = double(im.cfg.heads) * double(tokens.size());
  std::vector<float> out;
  out.reserve(std::size_t(im.cfg.layers) * std::size_t(past));
  for (const auto& d : drawn) {
    const Tensor c = (d / rows).to(torch::kCPU).contiguous();
    out.insert(out.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  return out;
}

PrefillResult Model::extend(const kv::KVCache& cache, std::span<const std::int32_t> tokens) const {
  const auto& im = *impl_;
  if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "extend needs at least one token");
  im.check_tokens(tokens);
  const auto start = std::chrono::steady_clock::now();
  c10::InferenceMode guard;
  std::int64_t pos0 = 0;
  auto kv = im.from_cache(cache, pos0);
  const std::vector<std::int32_t> ids(tokens.begin(), tokens.end());
  const Tensor logits = im.forward(ids, pos0, kv, nullptr, false, {});
  const int T = static_cast<int>(ids.size());
  PrefillResult r;
  r.cache = im.make_cache(T);
  r.cache.info.token_ids = ids;
  r.cache.info.positions.resize(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t) r.cache.info.positions[t] = static_cast<std::int32_t>(pos0 + t);
  r.cache.info.rope_applied = true;
  for (int l = 0; l < im.cfg.layers; ++l) {
    // The forward pass appended the new tokens' K/V after the cache's.
    for (auto [src, kind] : {std::pair{&kv[l].k, kv::Kind::Key}, std::pair{&kv[l].v, kv::Kind::Value}}) {
      const Tensor c = src->narrow(1, src->size(1) - T, T).to(torch::kCPU).contiguous();
      auto dst = r.cache.tensor(l, kind);
      std::memcpy(dst.data(), c.data_ptr<float>(), dst.size() * sizeof(float));
    }
  }
  const Tensor lg = logits.to(torch::kCPU).contiguous();
  r.last_logits.assign(lg.data_ptr<float>(), lg.data_ptr<float>() + lg.numel());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::vector<std::int32_t> Model::generate(const kv::KVCache& cache, std::span<const std::int32_t> tokens,
                                          int n, bool stop_at_eos) const {
  const auto& im = *impl_;
  if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "generate needs at least one prompt token");
  if (n < 0) throw Error(ErrorCode::InvalidArgument, "generate: negative token count");
  im.check_tokens(tokens);
  c10::InferenceMode guard;
  std::int64_t pos = 0;
  auto kv = im.from_cache(cache, pos);
  std::vector<std::int32_t> ids(tokens.begin(), tokens.end());
  std::vector<std::int32_t> out;
  for (int i = 0; i < n; ++i) {
    const Tensor lg = im.forward(ids, pos, kv, nullptr, false, {});
    pos += static_cast<std::int64_t>(ids.size());
    const auto next = static_cast<std::int32_t>(lg.argmax(-1).item<std::int64_t>());
    out.push_back(next);
    if (stop_at_eos && next == im.tok->eos_id()) break;
    ids.assign(1, next);
  }
  return out;
}

}  // namespace kvscope::model
