// SPDX-License-Identifier: Apache-2.0
// The transform codec on real caches of the default model (label `model`):
// bases calibrated on two texts code a third text's cache stored after RoPE
// (keys before RoPE, RoPE re-applied at decode), and the model continuing
// from the decoded cache stays close to the original.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/codec.h"
#include "kvscope/codec/transform_basis.h"
#include "kvscope/common/paths.h"
#include "kvscope/model/model.h"
#include "test_model.h"

namespace kvscope::codec {
namespace {

std::vector<std::int32_t> tokens_of(const model::Model& m, const std::string& context, std::size_t n) {
  const std::string text = read_file(dataset_dir() / "contexts" / (context + ".txt"));
  auto ids = m.tokenizer().encode(text.substr(0, 6 * n), true);
  ids.resize(std::min(ids.size(), n));
  return ids;
}

double mean_kl(const std::vector<float>& a, const std::vector<float>& b, int vocab) {
  double kl = 0;
  const std::size_t rows = a.size() / std::size_t(vocab);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* x = a.data() + r * vocab;
    const float* y = b.data() + r * vocab;
    double mx = x[0], my = y[0], sx = 0, sy = 0;
    for (int i = 1; i < vocab; ++i) mx = std::max(mx, double(x[i])), my = std::max(my, double(y[i]));
    for (int i = 0; i < vocab; ++i) sx += std::exp(x[i] - mx), sy += std::exp(y[i] - my);
    for (int i = 0; i < vocab; ++i) {
      const double lp = x[i] - mx - std::log(sx), lq = y[i] - my - std::log(sy);
      kl += std::exp(lp) * (lp - lq);
    }
  }
  return kl / double(rows);
}

TEST(TransformRealCache, CalibratedBasisCodesKeysBeforeRopeAndKeepsTheModelClose) {
  KVSCOPE_REQUIRE_DEFAULT_MODEL(model_path);
  const auto m = model::Model::load(model_path, {});
  model::PrefillOptions pre;
  pre.keep_pre_rope_keys = true;
  pre.want_last_logits = false;
  std::vector<kv::KVCache> calibration_caches;
  for (const char* c : {"kjv-genesis", "apache-2.0"})
    calibration_caches.push_back(*m->prefill(tokens_of(*m, c, 384), pre).pre_rope);
  calibration::CalibrationFile file;
  file.sections[transform::kSectionName] =
      transform::serialize_calibration(transform::build_calibration(calibration_caches));
  const auto dir = std::filesystem::temp_directory_path() / "kvscope-transform-model-test";
  std::filesystem::remove_all(dir);
  const auto path = calibration::save(calibration::serialize(file), dir);

  const auto ids = tokens_of(*m, "python-appetite", 320);
  const std::vector<std::int32_t> context(ids.begin(), ids.begin() + 288), next(ids.begin() + 288, ids.end());
  model::PrefillOptions po;
  po.want_last_logits = false;
  kv::KVCache cache = m->prefill(context, po).cache;  // keys after RoPE, RoPE tables in its info
  cache.round_to_fp16();
  ASSERT_TRUE(cache.info.rope_applied);
  const auto reference = m->continue_logits(cache, next);

  DecodeOptions o;
  o.profile_dir = dir.string();
  double last_kl = 1e9;
  for (const char* bits : {"1.5", "4"}) {
    const auto r = find_codec("transform").encode(cache, {{"calibration", path.string()}, {"bits", bits}});
    EXPECT_NEAR(r.size.bits_per_element(), std::stod(bits), 0.1 * std::stod(bits));
    const auto info = inspect_stream(r.bytes);
    ASSERT_EQ(info.codec_header_bytes, 18u);  // source: calibration, hash
    const auto d = decode(r.bytes, o);
    EXPECT_TRUE(d.info.rope_applied);
    // Sinks are exact; the keys of coded tokens came back through RoPE at their positions.
    EXPECT_EQ(d.at(3, kv::Kind::Key, 1, 2, 5), cache.at(3, kv::Kind::Key, 1, 2, 5));
    double err = 0, power = 0;
    for (int t = 4; t < cache.shape().tokens; ++t)
      for (int dim = 0; dim < cache.shape().head_dim; ++dim) {
        const double x = cache.at(10, kv::Kind::Key, 0, t, dim), y = d.at(10, kv::Kind::Key, 0, t, dim);
        err += (x - y) * (x - y);
        power += x * x;
      }
    EXPECT_LT(err / power, std::stod(bits) > 2 ? 0.01 : 0.1) << bits;
    const double kl = mean_kl(reference, m->continue_logits(d, next), m->config().vocab);
    EXPECT_LT(kl, last_kl) << bits;
    last_kl = kl;
  }
  EXPECT_LT(last_kl, 0.01);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvscope::codec
