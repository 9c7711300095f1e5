// SPDX-License-Identifier: Apache-2.0
#include "codecs.h"
#include "kvscope/common/error.h"

namespace kvscope::codec {

std::vector<const Codec*> all_codecs() {
  static const std::vector<const Codec*> codecs = [] {
    std::vector<const Codec*> v = {&detail::fp16_codec(),     &detail::int8_codec(),
                                   &detail::int4_codec(),     &detail::cachegen_codec(),
                                   &detail::lmcache_codec(),  &detail::kivi2_codec(),
                                   &detail::transform_codec()};
    if (const Codec* z = detail::zstd_codec()) v.push_back(z);
    return v;
  }();
  return codecs;
}

const Codec& find_codec(const std::string& name) {
  std::string names;
  for (const Codec* c : all_codecs()) {
    if (c->name() == name) return *c;
    names += (names.empty() ? "" : ", ") + c->name();
  }
  throw Error(ErrorCode::InvalidArgument, "unknown codec '" + name + "' (known: " + names + ")");
}

EncodeResult encode(const kv::KVCache& cache, const CodecConfig& config, const EncodeOptions& options) {
  return find_codec(config.codec).encode(cache, config.params, options);
}

}  // namespace kvscope::codec
