// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli encode --out FILE.h5`, `decode --in FILE.h5` and
// `inspect FILE.h5 --json`: the extension chooses the container, decoding the
// .h5 gives the same cache as decoding the .kvc, and nothing is overwritten
// without --force.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "hdf5_test_util.h"
#include "kvscope/io/raw_cache.h"

namespace kvscope {
namespace {

using test::TempDir;

const std::filesystem::path kCli = std::filesystem::path(KVSCOPE_BINARY_DIR) / "app" / "cli" / "kvscope-cli";

/// Runs the CLI with `args`; returns its exit status, stdout+stderr in `output`.
int cli(const TempDir& dir, const std::string& args, std::string* output = nullptr) {
  const auto out = dir / "cli-output.txt";
  const int status = std::system((kCli.string() + " " + args + " >'" + out.string() + "' 2>&1").c_str());
  if (output != nullptr) {
    const auto bytes = test::read_all(out);
    output->assign(bytes.begin(), bytes.end());
  }
  return status;
}

TEST(Hdf5Cli, EncodeDecodeInspectThroughH5) {
  ASSERT_TRUE(std::filesystem::exists(kCli)) << kCli;
  TempDir dir("cli");
  io::save_cache(test::make_cache({2, 2, 40, 16}), dir / "c.safetensors");
  const std::string in = (dir / "c.safetensors").string();
  const std::string h5 = (dir / "c.h5").string();
  const std::string kvc = (dir / "c.kvc").string();
  std::string out;
  ASSERT_EQ(cli(dir, "encode --in '" + in + "' --out '" + h5 + "' --codec int8 --json", &out), 0) << out;
  ASSERT_EQ(cli(dir, "encode --in '" + in + "' --out '" + kvc + "' --codec int8 --json", &out), 0) << out;
  ASSERT_EQ(cli(dir, "decode --in '" + h5 + "' --out '" + (dir / "from_h5.safetensors").string() + "' --json",
                &out),
            0)
      << out;
  {  // Where it decoded, and why not on the GPU when not there (issue #19).
    const auto d = nlohmann::json::parse(out);
    EXPECT_EQ(d["backend"] == "cpu", !d["cpu_reason"].get<std::string>().empty()) << out;
  }
  // Same cache, bit for bit, as decoding the .kvc (each CLI start loads
  // libtorch, so the .kvc side is decoded in process; `decode` writes fp16).
  kv::KVCache expected = codec::decode(test::read_all(kvc));
  expected.round_to_fp16();
  EXPECT_TRUE(test::bit_identical(io::load_cache(dir / "from_h5.safetensors"), expected));

  ASSERT_EQ(cli(dir, "inspect '" + h5 + "' --json", &out), 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["container"], "hdf5");
  EXPECT_EQ(j["format_version"], io::kHdf5FormatVersion);
  EXPECT_EQ(j["model"]["tokens"], 40);
  ASSERT_EQ(j["levels"].size(), 1u);
  EXPECT_EQ(j["levels"][0]["codec"], "int8");
  EXPECT_EQ(j["levels"][0]["encoded_bytes"], std::filesystem::file_size(kvc));
  EXPECT_FALSE(j["levels"][0]["sections"].empty());
  EXPECT_FALSE(j["has_reference"].get<bool>());
}

TEST(Hdf5Cli, NoOverwriteWithoutForce) {
  ASSERT_TRUE(std::filesystem::exists(kCli)) << kCli;
  TempDir dir("cliow");
  io::save_cache(test::make_cache(), dir / "c.safetensors");
  const std::string in = (dir / "c.safetensors").string();
  const std::string h5 = (dir / "c.h5").string();
  std::string out;
  ASSERT_EQ(cli(dir, "encode --in '" + in + "' --out '" + h5 + "' --codec int4 --json", &out), 0) << out;
  const auto before = test::read_all(h5);
  EXPECT_NE(cli(dir, "encode --in '" + in + "' --out '" + h5 + "' --codec int8 --json", &out), 0);
  EXPECT_NE(out.find("--force"), std::string::npos) << out;
  EXPECT_EQ(test::read_all(h5), before);
  std::ofstream(dir / "context.txt") << "hello world";
  ASSERT_EQ(
      cli(dir,
          "encode --in '" + in + "' --out '" + h5 + "' --codec int8 --force --include-reference --text '" +
              (dir / "context.txt").string() + "' --json",
          &out),
      0)
      << out;
  const auto back = io::import_hdf5(h5);
  EXPECT_EQ(back.levels.at(0).config.codec, "int8");
  EXPECT_TRUE(back.has_reference);
  EXPECT_EQ(back.text.value_or(""), "hello world");
  // A damaged file is refused with the file named, not decoded.
  auto bytes = test::read_all(h5);
  bytes[bytes.size() / 2] ^= 1;
  test::write_all(h5, bytes);
  EXPECT_NE(cli(dir, "decode --in '" + h5 + "' --out '" + (dir / "x.safetensors").string() + "'", &out), 0);
  EXPECT_NE(out.find("CRC32C mismatch"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

// --max-elements (docs/hostile-input.md) caps what any command decodes or
// loads; given before or after the command's name.
TEST(Hdf5Cli, MaxElementsRefusesLargerInputsNamingBothNumbers) {
  ASSERT_TRUE(std::filesystem::exists(kCli)) << kCli;
  TempDir dir("cap");
  io::save_cache(test::make_cache({2, 2, 40, 16}), dir / "c.safetensors");  // 5120 values
  const std::string in = (dir / "c.safetensors").string();
  const std::string kvc = (dir / "c.kvc").string();
  const std::string out = (dir / "d.safetensors").string();
  std::string text;
  ASSERT_EQ(cli(dir, "encode --in '" + in + "' --out '" + kvc + "' --codec int8", &text), 0) << text;
  EXPECT_NE(cli(dir, "decode --in '" + kvc + "' --out '" + out + "' --max-elements 5000", &text), 0);
  EXPECT_NE(text.find("5120"), std::string::npos) << text;
  EXPECT_NE(text.find("limit of 5000"), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_NE(
      cli(dir, "--max-elements 5000 encode --in '" + in + "' --out '" + kvc + ".2' --codec int8", &text), 0);
  EXPECT_NE(text.find("limit of 5000"), std::string::npos) << text;
  EXPECT_EQ(cli(dir, "decode --in '" + kvc + "' --out '" + out + "' --max-elements 5120", &text), 0) << text;
}

}  // namespace
}  // namespace kvscope
