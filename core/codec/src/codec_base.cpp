// SPDX-License-Identifier: Apache-2.0
#include "codec_base.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <sstream>

#include "kvscope/codec/entropy_bits.h"
#include "kvscope/common/fp16.h"

namespace kvscope::codec::detail {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

bool parse_long(const std::string& text, long long& out) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  const char* b = t.data();
  const char* e = t.data() + t.size();
  if (*b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && p == e;
}

bool parse_double(const std::string& text, double& out) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  const char* b = t.data();
  const char* e = t.data() + t.size();
  if (*b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && p == e && std::isfinite(out);
}

bool parse_bool(const std::string& t, bool& out) {
  if (t == "true" || t == "1" || t == "on" || t == "yes") return out = true, true;
  if (t == "false" || t == "0" || t == "off" || t == "no") return out = false, true;
  return false;
}

std::string range_text(const ParamSpec& s) {
  std::ostringstream o;
  o << "[" << s.min << ", " << s.max << "]";
  return o.str();
}

// Validates `value` against `spec` and returns its canonical text form.
std::string canonical(const std::string& codec, const ParamSpec& spec, const std::string& value) {
  const std::string where = "codec '" + codec + "' parameter '" + spec.name + "'";
  switch (spec.type) {
    case ParamSpec::Type::Int: {
      long long v;
      if (!parse_long(value, v))
        throw Error(ErrorCode::InvalidArgument, where + ": '" + value + "' is not an integer");
      if (v < spec.min || v > spec.max)
        throw Error(ErrorCode::InvalidArgument, where + ": " + value + " is outside " + range_text(spec));
      return std::to_string(v);
    }
    case ParamSpec::Type::Float: {
      double v;
      if (!parse_double(value, v))
        throw Error(ErrorCode::InvalidArgument, where + ": '" + value + "' is not a number");
      if (v < spec.min || v > spec.max)
        throw Error(ErrorCode::InvalidArgument, where + ": " + value + " is outside " + range_text(spec));
      // The shortest text that reads back as the same double: "0.35", not
      // "0.34999999999999998" (a default must equal its own canonical form).
      char buf[64];
      const auto res = std::to_chars(buf, buf + sizeof buf, v);
      return std::string(buf, res.ptr);
    }
    case ParamSpec::Type::Bool: {
      bool v;
      if (!parse_bool(trim(value), v))
        throw Error(ErrorCode::InvalidArgument, where + ": '" + value + "' is not true/false");
      return v ? "true" : "false";
    }
    case ParamSpec::Type::Choice: {
      const std::string t = trim(value);
      if (std::find(spec.choices.begin(), spec.choices.end(), t) == spec.choices.end()) {
        std::string list;
        for (const auto& c : spec.choices) list += (list.empty() ? "" : ", ") + c;
        throw Error(ErrorCode::InvalidArgument, where + ": '" + value + "' is not one of " + list);
      }
      return t;
    }
    case ParamSpec::Type::Text:
      if (value.size() > 4096) throw Error(ErrorCode::InvalidArgument, where + ": text too long");
      return value;
    case ParamSpec::Type::IntList: {
      std::string out;
      if (trim(value).empty()) return out;  // an empty list (e.g. no layer splits)
      std::stringstream ss(value);
      std::string item;
      int n = 0;
      while (std::getline(ss, item, ',')) {
        long long v;
        if (!parse_long(item, v))
          throw Error(ErrorCode::InvalidArgument,
                      where + ": '" + value + "' is not a comma-separated integer list");
        if (v < spec.min || v > spec.max)
          throw Error(ErrorCode::InvalidArgument,
                      where + ": element " + std::to_string(v) + " is outside " + range_text(spec));
        out += (n++ ? "," : "") + std::to_string(v);
        if (n > 4096) throw Error(ErrorCode::InvalidArgument, where + ": list too long");
      }
      return out;
    }
  }
  throw Error(ErrorCode::Internal, where + ": unknown type");
}

}  // namespace

Params::Params(const std::string& codec, const std::vector<ParamSpec>& specs, const ParamSet& given)
    : codec_(codec) {
  for (const auto& entry : given) {
    const std::string& k = entry.first;
    if (std::none_of(specs.begin(), specs.end(), [&](const ParamSpec& s) { return s.name == k; })) {
      std::string list;
      for (const auto& s : specs) list += (list.empty() ? "" : ", ") + s.name;
      throw Error(ErrorCode::InvalidArgument, "codec '" + codec + "' has no parameter '" + k +
                                                  "' (it has: " + (list.empty() ? "none" : list) + ")");
    }
  }
  for (const auto& s : specs) {
    auto it = given.find(s.name);
    values_[s.name] = canonical(codec, s, it == given.end() ? s.default_value : it->second);
  }
}

const std::string& Params::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end())
    throw Error(ErrorCode::Internal, "codec '" + codec_ + "': no parameter '" + name + "'");
  return it->second;
}
int Params::get_int(const std::string& name) const {
  return std::stoi(get(name));
}
double Params::get_float(const std::string& name) const {
  return std::stod(get(name));
}
bool Params::get_bool(const std::string& name) const {
  return get(name) == "true";
}
std::vector<int> Params::get_int_list(const std::string& name) const {
  std::vector<int> out;
  std::stringstream ss(get(name));
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
  return out;
}

ParamSet CodecBase::coded_params(const StreamInfo& info) const {
  return stream_params(*this, StreamHeader{info, {}}).values();
}

ParamSpec chunk_tokens_spec(int default_tokens) {
  return {"chunk_tokens",
          ParamSpec::Type::Int,
          std::to_string(default_tokens),
          1,
          65536,
          {},
          "tokens per independently decodable chunk section"};
}

int chunk_count(int tokens, int chunk_tokens) {
  return tokens == 0 ? 0 : (tokens + chunk_tokens - 1) / chunk_tokens;
}

void require_finite(const kv::KVCache& cache, const std::string& codec) {
  for (float v : cache.data())
    if (!std::isfinite(v))
      throw Error(ErrorCode::InvalidArgument, "codec '" + codec + "' cannot encode NaN or infinite values");
}

std::uint16_t half_scale_up(float value, const std::string& codec) {
  if (!(value >= 0) || !std::isfinite(value))
    throw Error(ErrorCode::InvalidArgument, "codec '" + codec + "': invalid scale");
  std::uint16_t h = float_to_half(value);
  if (half_to_float(h) < value) ++h;
  if (h >= 0x7c00)
    throw Error(ErrorCode::InvalidArgument, "codec '" + codec + "': values too large for an fp16 scale");
  return h;
}

TensorOut tensor_out(kv::KVCache& cache, const SectionInfo& s) {
  const auto& sh = cache.shape();
  return TensorOut{cache.tensor(s.layer, s.kv).data(), sh.kv_heads, sh.tokens, sh.head_dim, s.token_begin};
}

double entropy_bits(std::span<const std::uint64_t> counts) {
  return codec::entropy_bits<std::uint64_t>(counts);
}

}  // namespace kvscope::codec::detail

namespace kvscope::codec::detail {
Params stream_params(const Codec& codec, const StreamHeader& header) {
  try {
    return Params(codec.name(), codec.params(&header.info.shape), header.info.params);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument) throw;
    throw Error(ErrorCode::Format, std::string("bitstream: ") + e.what());
  }
}
std::vector<int> bins_per_layer(const std::string& codec, const std::vector<int>& bins,
                                const std::vector<int>& splits, int layers, const std::string& bins_name,
                                const std::string& splits_name) {
  if (splits.empty() && bins.size() == std::size_t(layers) && layers > 1) return bins;  // one per layer
  if (splits.size() + 1 != bins.size())
    throw Error(ErrorCode::InvalidArgument,
                codec + ": '" + splits_name + "' needs " + std::to_string(bins.size() - 1) +
                    " layer indices (one fewer than '" + bins_name + "' has bins), got " +
                    std::to_string(splits.size()) + " (or no splits and one bin count per layer)");
  for (std::size_t i = 0; i < splits.size(); ++i)
    if (splits[i] < 1 || splits[i] >= layers || (i > 0 && splits[i] <= splits[i - 1]))
      throw Error(ErrorCode::InvalidArgument, codec + ": '" + splits_name +
                                                  "' must be increasing layer indices in [1, " +
                                                  std::to_string(layers - 1) + "]");
  std::vector<int> out(layers);
  std::size_t g = 0;
  for (int l = 0; l < layers; ++l) {
    while (g < splits.size() && l >= splits[g]) ++g;
    out[l] = bins[g];
  }
  return out;
}

}  // namespace kvscope::codec::detail
