// The Llama-family forward pass in libtorch: load weights from a
// WeightSource, prefill (capturing K/V), continue from a supplied cache.
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
#include "weight_source.h"

namespace kvscope::model {
namespace {

using torch::Tensor;
using torch::indexing::Slice;

// Attention scores of one query block are at most this many floats (256 MB),
// so long contexts never materialise a full T x T matrix per head.
constexpr std::int64_t kScoreBudget = 64ll << 20;
// Query rows per attention block.
constexpr std::int64_t kQueryBlock = 256;

struct Layer {
  Tensor attn_norm, wqkv, bqkv, wo, ffn_norm, wgu, wdown;
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

// llama.cpp stores Q/K rows permuted for interleaved RoPE; undo it so the
// cache keeps HF's channel order whatever the file format.
Tensor unpermute_rows(const Tensor& w, std::int64_t heads) {
  const auto rows = w.size(0);
  const auto hd = rows / heads;
  if (w.dim() == 1) return w.view({heads, hd / 2, 2}).transpose(1, 2).reshape({rows}).contiguous();
  return w.view({heads, hd / 2, 2, w.size(1)}).transpose(1, 2).reshape({rows, w.size(1)}).contiguous();
}

}  // namespace

struct Model::Impl {
  ModelConfig cfg;
  std::unique_ptr<Tokenizer> tok;
  torch::Device device{torch::kCPU};
  Tensor embd, out_norm, out_w;
  std::vector<Layer> layers;
  std::vector<double> inv_freq;  // head_dim / 2 rotary frequencies, scaling applied
  mutable std::mutex sha_mutex;
  mutable std::string sha;

  // cos/sin tables [T, head_dim] for absolute positions.
  std::pair<Tensor, Tensor> rope_tables(const std::vector<std::int64_t>& positions) const {
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
  // T entries are the queries' own; query row r sees keys 0..S-T+r.
  Tensor attention(const Tensor& q, const Tensor& K, const Tensor& V) const {
    const auto nh = q.size(0), T = q.size(1), hd = q.size(2);
    const auto nkv = K.size(0), S = K.size(1), g = nh / nkv, past = S - T;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    const Tensor qg = q.reshape({nkv, g, T, hd});
    Tensor out = torch::empty({nkv, g, T, hd}, q.options());
    // Small query blocks let each block stop at its last causal key, which
    // skips almost half the work of a full T x S product on long prefills.
    const std::int64_t block = std::clamp<std::int64_t>(
        std::min<std::int64_t>(kQueryBlock, kScoreBudget / std::max<std::int64_t>(1, nh * S)), 1, T);
    for (std::int64_t r0 = 0; r0 < T; r0 += block) {
      const auto B = std::min(block, T - r0);
      const auto S_lim = past + r0 + B;
      const Tensor qb = qg.narrow(2, r0, B).reshape({nkv, g * B, hd});
      Tensor scores = torch::bmm(qb, K.narrow(1, 0, S_lim).transpose(1, 2)).mul_(scale);
      // Key j is masked for row b when j > past + r0 + b.
      const Tensor rows =
          torch::arange(past + r0, past + r0 + B, torch::TensorOptions().dtype(torch::kLong).device(device));
      const Tensor cols = torch::arange(S_lim, torch::TensorOptions().dtype(torch::kLong).device(device));
      const Tensor mask = cols.unsqueeze(0) > rows.unsqueeze(1);  // [B, S_lim]
      scores.view({nkv, g, B, S_lim}).masked_fill_(mask, -std::numeric_limits<float>::infinity());
      const Tensor p = torch::softmax(scores, -1);
      const Tensor ob = torch::bmm(p, V.narrow(1, 0, S_lim));  // [nkv, g*B, hd]
      out.narrow(2, r0, B).copy_(ob.view({nkv, g, B, hd}));
    }
    return out.view({nh, T, hd}).transpose(0, 1).reshape({T, nh * hd});
  }

  // Runs `ids` at positions pos0.. after the K/V in `kv` (appending to it).
  // Returns logits for every row (all_logits) or the last row only.
  Tensor forward(const std::vector<std::int32_t>& ids, std::int64_t pos0, std::vector<LayerKV>& kv,
                 std::vector<Tensor>* pre_rope, bool all_logits, const ProgressFn& progress) const {
    const auto T = static_cast<std::int64_t>(ids.size());
    const auto nh = cfg.heads, nkv = cfg.kv_heads, hd = cfg.head_dim, I = cfg.intermediate;
    std::vector<std::int64_t> ids64(ids.begin(), ids.end());
    const Tensor idx = torch::from_blob(ids64.data(), {T}, torch::kLong).clone().to(device);
    Tensor x = embd.index_select(0, idx);
    std::vector<std::int64_t> positions(static_cast<std::size_t>(T));
    for (std::int64_t t = 0; t < T; ++t) positions[t] = pos0 + t;
    const auto [cos, sin] = rope_tables(positions);
    for (int l = 0; l < cfg.layers; ++l) {
      const Layer& L = layers[l];
      const Tensor h = rms_norm(x, L.attn_norm, cfg.rms_eps);
      const Tensor qkv = L.bqkv.defined() ? torch::addmm(L.bqkv, h, L.wqkv) : torch::mm(h, L.wqkv);
      Tensor q = qkv.narrow(1, 0, nh * hd).view({T, nh, hd}).transpose(0, 1);
      Tensor k = qkv.narrow(1, nh * hd, nkv * hd).view({T, nkv, hd}).transpose(0, 1);
      Tensor v = qkv.narrow(1, (nh + nkv) * hd, nkv * hd).view({T, nkv, hd}).transpose(0, 1);
      if (pre_rope) pre_rope->push_back(k.contiguous());
      q = apply_rope(q, cos, sin);
      k = apply_rope(k, cos, sin);
      auto& c = kv[l];
      c.k = c.k.defined() ? torch::cat({c.k, k}, 1) : k.contiguous();
      c.v = c.v.defined() ? torch::cat({c.v, v}, 1) : v.contiguous();
      const Tensor a = attention(q, c.k, c.v);
      x = x + torch::mm(a, L.wo);
      const Tensor h2 = rms_norm(x, L.ffn_norm, cfg.rms_eps);
      const Tensor gu = torch::mm(h2, L.wgu);
      x = x + torch::mm(torch::silu(gu.narrow(1, 0, I)) * gu.narrow(1, I, I), L.wdown);
      report_progress(progress, static_cast<double>(l + 1) / cfg.layers,
                      "layer " + std::to_string(l + 1) + "/" + std::to_string(cfg.layers));
    }
    const Tensor last = all_logits ? x : x.narrow(0, T - 1, 1);
    return torch::mm(rms_norm(last, out_norm, cfg.rms_eps), out_w);
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
    Tensor cos, sin;
    if (!cache.info.rope_applied) std::tie(cos, sin) = rope_tables(positions);
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
      if (!cache.info.rope_applied) kv[l].k = apply_rope(kv[l].k, cos, sin).contiguous();
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
    c.info.rope_inv_freq.assign(static_cast<std::size_t>(cfg.layers), inv_freq);
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
  report_progress(options.progress, 0.0, "reading header");
  detail::OpenedModel opened = detail::open_model(path);
  auto model = std::unique_ptr<Model>(new Model());
  auto& im = *model->impl_;
  im.cfg = std::move(opened.config);
  im.device = device;
  im.tok = std::make_unique<Tokenizer>(std::move(opened.tokenizer));
  const auto& c = im.cfg;
  const auto& src = *opened.weights;
  const std::string label = src.label();
  c10::InferenceMode guard;

  const int total = c.layers * 9 + 3;
  int done = 0;
  auto load = [&](const std::string& name, std::vector<std::int64_t> expect) {
    const auto shape = src.shape(name);
    if (shape != expect) {
      throw Error(
          ErrorCode::Format, label,
          "tensor '" + name + "' has shape " + shape_text(shape) + ", expected " + shape_text(expect));
    }
    Tensor t = torch::empty(expect, torch::kFloat32);
    src.read(name, std::span<float>(t.data_ptr<float>(), static_cast<std::size_t>(t.numel())));
    report_progress(options.progress, std::min(1.0, static_cast<double>(++done) / total), "loading " + name);
    return t;
  };
  const std::int64_t H = c.hidden, nh = c.heads, nkv = c.kv_heads, hd = c.head_dim, I = c.intermediate;
  im.embd = load("token_embd", {c.vocab, H}).to(device);
  im.out_norm = load("output_norm", {H}).to(device);
  // Weights are kept transposed ([in, out]) so activations multiply on the left.
  im.out_w = c.tied_embeddings ? im.embd.t() : load("output", {c.vocab, H}).to(device).t();
  const bool perm = src.qk_interleaved();
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer L;
    L.attn_norm = load(p + "attn_norm", {H}).to(device);
    Tensor wq = load(p + "attn_q", {nh * hd, H}), wk = load(p + "attn_k", {nkv * hd, H});
    const Tensor wv = load(p + "attn_v", {nkv * hd, H});
    if (perm) {
      wq = unpermute_rows(wq, nh);
      wk = unpermute_rows(wk, nkv);
    }
    L.wqkv = torch::cat({wq, wk, wv}, 0).t().contiguous().to(device);
    if (c.qkv_bias) {
      Tensor bq = load(p + "attn_q.bias", {nh * hd}), bk = load(p + "attn_k.bias", {nkv * hd});
      const Tensor bv = load(p + "attn_v.bias", {nkv * hd});
      if (perm) {
        bq = unpermute_rows(bq, nh);
        bk = unpermute_rows(bk, nkv);
      }
      L.bqkv = torch::cat({bq, bk, bv}, 0).to(device);
    }
    L.wo = load(p + "attn_output", {H, nh * hd}).t().contiguous().to(device);
    L.ffn_norm = load(p + "ffn_norm", {H}).to(device);
    const Tensor wg = load(p + "ffn_gate", {I, H}), wu = load(p + "ffn_up", {I, H});
    L.wgu = torch::cat({wg, wu}, 0).t().contiguous().to(device);
    L.wdown = load(p + "ffn_down", {H, I}).t().contiguous().to(device);
    im.layers.push_back(std::move(L));
  }

  // Rotary frequencies, with the file's scaling.
  const auto half = c.head_dim / 2;
  im.inv_freq.resize(static_cast<std::size_t>(half));
  for (int i = 0; i < half; ++i) {
    im.inv_freq[i] = 1.0 / std::pow(c.rope_theta, (2.0 * i) / c.head_dim);
  }
  if (c.rope_scaling_type == "linear" && c.rope_scaling_factor > 0) {
    for (auto& f : im.inv_freq) f /= c.rope_scaling_factor;
  } else if (c.rope_scaling_type == "llama3") {
    const double old_ctx = c.rope_original_context, lo = c.rope_low_freq_factor, hi = c.rope_high_freq_factor;
    const double low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
    for (auto& f : im.inv_freq) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= c.rope_scaling_factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
        f = (1 - smooth) * f / c.rope_scaling_factor + smooth * f;
      }
    }
  }
  if (const auto factors = src.rope_freq_factors(); !factors.empty()) {
    if (static_cast<int>(factors.size()) != half) {
      throw Error(
          ErrorCode::Format, label,
          "rope_freqs has " + std::to_string(factors.size()) + " entries, expected " + std::to_string(half));
    }
    for (int i = 0; i < half; ++i) im.inv_freq[i] /= factors[i];
    if (im.cfg.rope_scaling_type.empty()) im.cfg.rope_scaling_type = "llama3";
  }
  if (options.hash_file) im.sha = model_file_sha256(c.path);
  report_progress(options.progress, 1.0, "loaded");
  return model;
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
  const Tensor logits =
      im.forward(ids, 0, kv, options.keep_pre_rope_keys ? &pre : nullptr, false, options.progress);

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
