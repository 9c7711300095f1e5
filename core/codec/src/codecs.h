// SPDX-License-Identifier: Apache-2.0
#pragma once

// The built-in codecs, one per file; registry.cpp lists them.

#include "kvscope/codec/codec.h"

namespace kvscope::codec::detail {
const Codec& fp16_codec();
const Codec& int8_codec();
const Codec& int4_codec();
const Codec& cachegen_codec();
const Codec& lmcache_codec();
const Codec& kivi2_codec();
const Codec& transform_codec();
/// nullptr when this build has no zstd.
const Codec* zstd_codec();
}  // namespace kvscope::codec::detail
