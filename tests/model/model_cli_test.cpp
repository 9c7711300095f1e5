// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli model info --json` on models the test writes: architecture,
// every tensor type, the weights' storage and memory, sliding-window layers;
// and for a model that cannot be loaded, the reason in the JSON and exit 1.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tiny_model.h"

using namespace kvscope::test;

namespace {

const std::filesystem::path kCli = std::filesystem::path(KVSCOPE_BINARY_DIR) / "app" / "cli" / "kvscope-cli";

// Runs the CLI; its exit status, stdout in `out` (progress goes to stderr).
int cli(const std::filesystem::path& dir, const std::string& args, std::string& out) {
  const auto file = dir / "stdout.txt";
  const int status =
      std::system((kCli.string() + " " + args + " >'" + file.string() + "' 2>/dev/null").c_str());
  std::ifstream in(file);
  out.assign(std::istreambuf_iterator<char>(in), {});
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class ModelCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kCli)) << kCli;
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // One folder per test and process: ctest runs the tests of this file in
  // parallel, and a shared folder let one test delete the other's files
  // (regression: both failed at random under `ctest -j2`).
  const std::filesystem::path dir_ =
      std::filesystem::temp_directory_path() /
      ("kvscope_model_cli_test_" +
       std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
       std::to_string(::getpid()));
};

TinyDims gemma3_dims() {
  TinyDims d;
  d.arch = "gemma3";
  d.layers = 6;
  d.hidden = 256;
  d.intermediate = 512;
  d.heads = 4;
  d.kv_heads = 1;
  d.head_dim = 64;
  d.sliding_window = 8;
  d.rope_local_theta = 10000;
  d.rope_theta = 1e6;
  return d;
}

}  // namespace

TEST_F(ModelCli, InfoReportsArchitectureTensorTypesMemoryAndWindows) {
  // Q4_K_M style: Q4_K matrices, Q6_K for attn_v and ffn_down, F32 norms.
  write_bytes(dir_ / "g.gguf", tiny_gguf_bytes(TinyWeights(gemma3_dims()), 12, 14));
  std::string out;
  ASSERT_EQ(cli(dir_, "model info --json --weights file --model '" + (dir_ / "g.gguf").string() + "'", out),
            0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_TRUE(j["loadable"].get<bool>());
  EXPECT_EQ(j["architecture"], "gemma3");
  EXPECT_EQ(j["tensor_types"]["Q4_K"], 6 * 5 + 1);  // q, k, o, gate, up per layer + token_embd
  EXPECT_EQ(j["tensor_types"]["Q6_K"], 6 * 2);
  EXPECT_EQ(j["tensor_types"]["F32"], 1 + 6 * 6);  // output_norm + six norms per layer
  EXPECT_EQ(j["weight_storage"], "file");
  EXPECT_EQ(j["weights_memory_bytes"].get<std::int64_t>() > 0, true);
  EXPECT_LT(j["weights_memory_bytes"].get<std::int64_t>(), j["parameter_count"].get<std::int64_t>() * 4 / 3);
  EXPECT_EQ(j["layer_window"], nlohmann::json({8, 8, 8, 8, 8, 0}));
  EXPECT_GT(j["process_rss_bytes"].get<std::int64_t>(), 0);
  ASSERT_EQ(
      cli(dir_, "model info --json --weights float32 --model '" + (dir_ / "g.gguf").string() + "'", out), 0);
  const auto f = nlohmann::json::parse(out);
  EXPECT_EQ(f["weight_storage"], "float32");
  EXPECT_GT(f["weights_memory_bytes"].get<std::int64_t>(), j["weights_memory_bytes"].get<std::int64_t>() * 3);
}

TEST_F(ModelCli, InfoOnAModelThatCannotLoadSaysWhyAndFails) {
  auto bytes = tiny_gguf_bytes(TinyWeights(gemma3_dims()), 14);
  retype_tensor(bytes, "blk.2.ffn_down.weight", 2, 16);  // Q6_K -> IQ2_XXS
  write_bytes(dir_ / "iq2.gguf", bytes);
  std::string out;
  EXPECT_EQ(cli(dir_, "model info --json --model '" + (dir_ / "iq2.gguf").string() + "'", out), 1) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_FALSE(j["loadable"].get<bool>());
  const auto why = j["error"].get<std::string>();
  EXPECT_NE(why.find("IQ2_XXS"), std::string::npos) << why;
  EXPECT_NE(why.find("blk.2.ffn_down.weight"), std::string::npos) << why;
}

// `calibrate --context` measures the model's channel weighting; an encode
// that finds it in the calibration folder writes a version 4 stream, which
// decodes without the folder.
TEST_F(ModelCli, CalibrateWritesChannelWeightingThatEncodesUse) {
  write_bytes(dir_ / "m.gguf", tiny_gguf_bytes(TinyWeights(TinyDims{})));
  {
    std::ofstream ctx(dir_ / "ctx.txt");
    for (int i = 0; i < 8; ++i) ctx << "the quick brown fox jumps over the lazy dog " << i << "\n";
  }
  const std::string model = " --model '" + (dir_ / "m.gguf").string() + "'";
  const std::string context = " --context '" + (dir_ / "ctx.txt").string() + "'";
  std::string out;
  ASSERT_EQ(cli(dir_,
                "calibrate" + model + context + " --max-tokens 48 --out-dir '" + (dir_ / "cal").string() +
                    "' --json",
                out),
            0)
      << out;
  const auto j = nlohmann::json::parse(out);
  const auto sections = j["sections"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(sections.begin(), sections.end(), "cachegen.channel-weighting"), sections.end()) << out;
  ASSERT_EQ(
      cli(dir_,
          "prefill" + model + context + " --max-tokens 48 --out '" + (dir_ / "c.safetensors").string() + "'",
          out),
      0);
  const std::string in = " --in '" + (dir_ / "c.safetensors").string() + "'";
  // `doctor` names the model's calibration files, or says there is none (and
  // what cachegen's defaults then lose).
  ::setenv("KVSCOPE_CALIBRATION_DIR", (dir_ / "empty").c_str(), 1);
  ASSERT_EQ(cli(dir_, "doctor --json" + model, out), 0) << out;
  EXPECT_TRUE(nlohmann::json::parse(out)["model_calibrations"].empty()) << out;
  ASSERT_EQ(cli(dir_, "doctor" + model, out), 0) << out;
  EXPECT_NE(out.find("none for the model"), std::string::npos) << out;
  ::setenv("KVSCOPE_CALIBRATION_DIR", (dir_ / "cal").c_str(), 1);
  ASSERT_EQ(cli(dir_, "doctor --json" + model, out), 0) << out;
  const auto files = nlohmann::json::parse(out)["model_calibrations"];
  ASSERT_EQ(files.size(), 1u) << out;
  EXPECT_EQ(std::filesystem::path(files[0].get<std::string>()).parent_path(), dir_ / "cal") << out;
  // Without a calibration: unweighted (version 5 for the default centroid
  // reconstruction, no channel_weighting). With the one just made: weighted.
  ::setenv("KVSCOPE_CALIBRATION_DIR", (dir_ / "empty").c_str(), 1);
  ASSERT_EQ(
      cli(dir_, "encode" + in + " --codec cachegen --set profile= --out '" + (dir_ / "c.kvc").string() + "'",
          out),
      0);
  ASSERT_EQ(cli(dir_, "inspect '" + (dir_ / "c.kvc").string() + "' --json", out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)["codec_version"], 5) << out;
  EXPECT_FALSE(nlohmann::json::parse(out)["params"].contains("channel_weighting")) << out;
  ::setenv("KVSCOPE_CALIBRATION_DIR", (dir_ / "cal").c_str(), 1);
  ASSERT_EQ(
      cli(dir_, "encode" + in + " --codec cachegen --set profile= --out '" + (dir_ / "w.kvc").string() + "'",
          out),
      0);
  ::setenv("KVSCOPE_CALIBRATION_DIR", (dir_ / "empty").c_str(), 1);
  ASSERT_EQ(cli(dir_, "inspect '" + (dir_ / "w.kvc").string() + "' --json", out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)["codec_version"], 5) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["params"].value("channel_weighting", ""), "calibrated") << out;
  EXPECT_EQ(
      cli(dir_,
          "decode --in '" + (dir_ / "w.kvc").string() + "' --out '" + (dir_ / "d.safetensors").string() + "'",
          out),
      0);
  ::unsetenv("KVSCOPE_CALIBRATION_DIR");
}
