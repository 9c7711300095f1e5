// SPDX-License-Identifier: Apache-2.0
#pragma once

// ggml tensor types as GGUF files store them: names, block sizes and
// dequantization to float32. Block layouts follow ggml's reference
// dequantizers (ggml-quants.c); the formulas are written out in
// core/io/src/ggml_dequantize.cpp and checked against the `gguf` Python
// package's independent numpy dequantizers (tests/io golden data made by
// tests/model/make_dequant_golden.py).

#include <cstdint>
#include <span>
#include <string>

namespace kvscope::io {

/// ggml tensor types (numbers as GGUF stores them).
enum class GgmlType : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

/// Values per block and bytes per block of a ggml type; {0, 0} when unknown.
struct GgmlBlock {
  std::uint64_t values = 0;
  std::uint64_t bytes = 0;
};
GgmlBlock ggml_block(std::uint32_t type);

/// Name of a ggml type ("Q4_K", "BF16", or "type 99" for unknown numbers).
std::string ggml_type_name(std::uint32_t type);

/// Whether ggml_dequantize() supports the type.
bool ggml_type_supported(std::uint32_t type);

/// The supported types, comma-separated, for error messages:
/// "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, ...".
const std::string& ggml_supported_types_text();

/// Bytes that `count` values of ggml `type` take, or 0 if the type is unknown
/// or `count` is not a whole number of blocks.
std::uint64_t ggml_nbytes(std::uint32_t type, std::uint64_t count);

/// Dequantizes `out.size()` values of ggml `type` from `bytes`, which must
/// hold exactly those values (a whole number of blocks, e.g. some rows of a
/// matrix). Checks the type and sizes before touching `out`:
/// Error(Unsupported) naming the type and listing the supported ones,
/// Error(Format) when the sizes disagree.
void ggml_dequantize(std::uint32_t type, std::span<const std::uint8_t> bytes, std::span<float> out);

}  // namespace kvscope::io
