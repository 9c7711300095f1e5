// SPDX-License-Identifier: Apache-2.0
// The GGUF reader on images built in memory: metadata, tensor infos,
// dequantization of every supported type, and clear errors on bad input.
#include "kvscope/io/gguf.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvscope/common/error.h"
#include "tiny_model.h"

using kvscope::Error;
using kvscope::ErrorCode;
using kvscope::io::GgufFile;
using namespace kvscope::test;

namespace {

std::vector<float> ramp(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + 0.01f * i);
  return v;
}

std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << p;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

GgufFile parse(const std::vector<std::uint8_t>& b) {
  return GgufFile::from_bytes(b, "test.gguf");
}

std::vector<std::uint8_t> one_tensor(std::uint32_t type, const std::vector<std::uint8_t>& bytes,
                                     std::uint64_t n) {
  return build_gguf({{"general.architecture", 8, std::string("llama")}}, {{"t", {n}, type, bytes}});
}

}  // namespace

TEST(Gguf, ParsesMetadataAndTensorInfos) {
  const auto img =
      build_gguf({{"general.architecture", 8, std::string("llama")},
                  {"llama.block_count", 4, std::uint64_t(30)},
                  {"llama.rope.freq_base", 6, 100000.0},
                  {"flag", 7, true},
                  {"tokens", 9, std::vector<std::string>{"a", "b", "ĠĠ"}},
                  {"types", 9, std::vector<std::int32_t>{1, 3, -2}}},
                 {{"w", {64, 3}, 0, encode_f32(ramp(192))}, {"b", {32}, 8, encode_q8_0(ramp(32))}}, 2);
  const auto f = parse(img);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_DOUBLE_EQ(*f.get_float("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(f.get_bool("flag"), true);
  EXPECT_EQ(f.find_value("tokens")->strings, (std::vector<std::string>{"a", "b", "ĠĠ"}));
  EXPECT_EQ(f.find_value("types")->ints(), (std::vector<std::int64_t>{1, 3, -2}));
  EXPECT_FALSE(f.get_int("absent").has_value());
  EXPECT_THROW(f.get_int("general.architecture"), Error);  // wrong type is an error, not a silent default
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.get("w").shape(), (std::vector<std::int64_t>{3, 64}));
  EXPECT_EQ(f.get("w").nbytes, 192u * 4);
  EXPECT_EQ(f.get("b").nbytes, 34u);
  EXPECT_EQ(f.dequantize(f.get("w")), ramp(192));
}

TEST(Gguf, DequantizesEverySupportedType) {
  const auto x = ramp(128);
  struct Case {
    std::uint32_t type;
    std::vector<std::uint8_t> bytes;
    float tol;
  };
  const Case cases[] = {{0, encode_f32(x), 0.f},       {1, encode_f16(x), 2e-3f},
                        {30, encode_bf16(x), 1.6e-2f}, {8, encode_q8_0(x), 1.2e-2f},
                        {2, encode_q4_0(x), 0.2f},     {3, encode_q4_1(x), 0.16f}};
  for (const auto& c : cases) {
    const auto f = parse(one_tensor(c.type, c.bytes, x.size()));
    const auto y = f.dequantize(f.get("t"));
    ASSERT_EQ(y.size(), x.size());
    float err = 0;
    for (std::size_t i = 0; i < x.size(); ++i) err = std::max(err, std::fabs(x[i] - y[i]));
    EXPECT_LE(err, c.tol) << kvscope::io::ggml_type_name(c.type);
  }
}

TEST(Gguf, DequantizesKnownBlocksExactly) {
  // Q4_1 block: d = 0.5, m = -1, nibbles j -> value j*0.5 - 1 (low), (15-j) for high.
  std::vector<std::uint8_t> q41;
  put_half(q41, 0.5f);
  put_half(q41, -1.0f);
  for (int j = 0; j < 16; ++j) q41.push_back(static_cast<std::uint8_t>(j | ((15 - j) << 4)));
  auto f = parse(one_tensor(3, q41, 32));
  auto y = f.dequantize(f.get("t"));
  for (int j = 0; j < 16; ++j) {
    EXPECT_FLOAT_EQ(y[j], j * 0.5f - 1.f);
    EXPECT_FLOAT_EQ(y[16 + j], (15 - j) * 0.5f - 1.f);
  }
  // Q4_0 block: d = 2, value = (q - 8) * 2.
  std::vector<std::uint8_t> q40;
  put_half(q40, 2.0f);
  for (int j = 0; j < 16; ++j) q40.push_back(static_cast<std::uint8_t>(j | (j << 4)));
  f = parse(one_tensor(2, q40, 32));
  y = f.dequantize(f.get("t"));
  for (int j = 0; j < 16; ++j) EXPECT_FLOAT_EQ(y[j], (j - 8) * 2.f);
  // Q8_0 block: d = 0.25, q = j - 16.
  std::vector<std::uint8_t> q80;
  put_half(q80, 0.25f);
  for (int j = 0; j < 32; ++j) q80.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(j - 16)));
  f = parse(one_tensor(8, q80, 32));
  y = f.dequantize(f.get("t"));
  for (int j = 0; j < 32; ++j) EXPECT_FLOAT_EQ(y[j], (j - 16) * 0.25f);
}

TEST(Gguf, DequantizationMatchesTheGgufPackageOnRandomBlocksOfEveryType) {
  // tests/model/golden/dequant: random blocks of each type and their values
  // as the `gguf` package's numpy dequantizers compute them
  // (tests/model/make_dequant_golden.py).
  const auto dir = std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/model/golden/dequant";
  const auto manifest = nlohmann::json::parse(std::ifstream(dir / "manifest.json"));
  const std::size_t n = manifest["values"].get<std::size_t>();
  int checked = 0;
  for (const auto& [name, entry] : manifest["types"].items()) {
    const auto type = entry["ggml_type"].get<std::uint32_t>();
    EXPECT_EQ(kvscope::io::ggml_type_name(type), name);
    EXPECT_TRUE(kvscope::io::ggml_type_supported(type)) << name;
    const auto bytes = read_file_bytes(dir / (name + ".bin"));
    const auto want_bytes = read_file_bytes(dir / (name + ".f32"));
    ASSERT_EQ(want_bytes.size(), n * 4) << name;
    std::vector<float> want(n);
    std::memcpy(want.data(), want_bytes.data(), want_bytes.size());
    ASSERT_EQ(kvscope::io::ggml_nbytes(type, n), bytes.size()) << name;
    // Through a GGUF file (a 4 x 256 matrix) and row by row.
    const auto f = parse(build_gguf({}, {{"t", {256, n / 256}, type, bytes}}));
    const auto got = f.dequantize(f.get("t"));
    std::vector<float> rows(n);
    for (std::uint64_t r = 0; r < n / 256; ++r)
      f.dequantize_rows(f.get("t"), r, std::span(rows).subspan(r * 256, 256));
    std::size_t differing = 0;
    for (std::size_t i = 0; i < n; ++i) {
      // Same float32 operations in the same order: bit-exact.
      if (std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(want[i])) ++differing;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(rows[i]), std::bit_cast<std::uint32_t>(got[i]))
          << name << " " << i;
    }
    EXPECT_EQ(differing, 0u) << name << ": first value " << got[0] << " vs " << want[0];
    ++checked;
  }
  EXPECT_EQ(checked, 16);
}

TEST(Gguf, UnsupportedTypeIsAnErrorNamingItAndTheSupportedTypes) {
  // IQ2_XXS (type 16): 256 values in 66 bytes; sized and validated, but not dequantized.
  const auto f = parse(one_tensor(16, std::vector<std::uint8_t>(66, 0), 256));
  try {
    f.dequantize(f.get("t"));
    FAIL() << "IQ2_XXS dequantized";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    const std::string what = e.what();
    EXPECT_NE(what.find("IQ2_XXS"), std::string::npos) << what;
    EXPECT_NE(what.find("test.gguf"), std::string::npos) << what;
    EXPECT_NE(what.find("Q4_K, Q5_K, Q6_K"), std::string::npos) << what;
  }
}

TEST(Gguf, UnsupportedTypeIsRefusedBeforeTheOutputIsAllocated) {
  // Regression (issue #18): dequantize() allocated elements floats before
  // checking the type, so a tiny file declaring 2^40 values of an unsupported
  // type asked for 4 TiB. An unknown type cannot be sized, so its data is
  // never validated against the file: the type check must come first.
  const auto f = parse(build_gguf({}, {{"t", {1ull << 20, 1ull << 20}, 99, {}}}));
  try {
    (void)f.dequantize(f.get("t"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("type 99"), std::string::npos) << e.what();
  }
}

TEST(Gguf, NumericMetadataArraysAreKeptOnceAsStored) {
  // Regression (issue #18): numeric arrays were copied as double and int64
  // (16 bytes per element whatever the stored width). Now the value views
  // the file's bytes and converts on request.
  std::vector<std::int32_t> types(100000, 1);
  types[7] = -2;
  const auto f =
      parse(build_gguf({{"types", 9, types}, {"scores", 9, std::vector<float>{0.5f, -1.25f}}}, {}));
  const auto* v = f.find_value("types");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->array_size, types.size());
  EXPECT_EQ(v->array_data.size(), types.size() * 4);
  const auto ints = v->ints();
  ASSERT_EQ(ints.size(), types.size());
  EXPECT_EQ(ints[7], -2);
  EXPECT_EQ(f.find_value("scores")->numbers(), (std::vector<double>{0.5, -1.25}));
  EXPECT_EQ(f.find_value("scores")->ints(), (std::vector<std::int64_t>{0, -1}));
}

TEST(Gguf, RejectsMalformedFilesWithClearErrors) {
  const auto good = one_tensor(0, encode_f32(ramp(64)), 64);
  auto expect_error = [](const std::vector<std::uint8_t>& b, ErrorCode code, const std::string& needle) {
    try {
      GgufFile::from_bytes(b, "bad.gguf");
      FAIL() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.gguf"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto b = good;
  b[0] = 'X';
  expect_error(b, ErrorCode::Format, "magic");
  b = good;
  b[4] = 1;  // version 1
  expect_error(b, ErrorCode::Unsupported, "version 1");
  b = good;
  b.resize(b.size() - 10);  // tensor data cut off
  expect_error(b, ErrorCode::Format, "truncated");
  b = good;
  b.resize(40);  // inside the metadata
  expect_error(b, ErrorCode::Format, "truncated");
  // Tensor row not a whole number of Q8_0 blocks.
  expect_error(one_tensor(8, std::vector<std::uint8_t>(34, 0), 20), ErrorCode::Format, "blocks");
  // A huge array count must fail fast, not allocate.
  b = build_gguf({{"a", 9, std::vector<std::string>{"x"}}}, {});
  std::uint64_t huge = 1ull << 60;
  std::memcpy(&b[4 + 4 + 8 + 8 + 8 + 1 + 4 + 4], &huge, 8);
  expect_error(b, ErrorCode::Format, "exceeds");
  // Duplicate keys.
  expect_error(build_gguf({{"k", 4, std::uint64_t(1)}, {"k", 4, std::uint64_t(2)}}, {}), ErrorCode::Format,
               "duplicate");
}

TEST(Gguf, OpensFilesFromDisk) {
  const auto dir = std::filesystem::temp_directory_path() / "kvscope_gguf_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / "one.gguf";
  write_bytes(path, one_tensor(1, encode_f16(ramp(64)), 64));
  const GgufFile f(path);
  EXPECT_EQ(f.tensors().size(), 1u);
  EXPECT_THROW(GgufFile(dir / "missing.gguf"), Error);
  std::filesystem::remove_all(dir);
}
