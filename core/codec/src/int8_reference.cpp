// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/codec.h"

namespace kvscope::codec {

// The paper's quantization baseline stores one int8 per element plus one
// fp16 scale per (layer, kind, token) row of kv_heads*head_dim values.
std::size_t int8_reference_bytes(const kv::CacheShape& shape) {
  const std::size_t rows = static_cast<std::size_t>(shape.layers) * 2 * shape.tokens;
  return shape.elements() + rows * 2;
}

}  // namespace kvscope::codec
