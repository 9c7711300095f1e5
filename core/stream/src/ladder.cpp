// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/ladder.h"

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::stream {
namespace {

std::string param_text(const nlohmann::json& v, const std::filesystem::path& path, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number()) return nlohmann::json(v.get<double>()).dump();
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) {
      if (!e.is_number_integer())
        throw Error(ErrorCode::Format, path.string(), where + ": arrays must hold integers");
      out += (out.empty() ? "" : ",") + std::to_string(e.get<long long>());
    }
    return out;
  }
  throw Error(ErrorCode::Format, path.string(),
              where + ": value must be a string, number, boolean or integer array");
}

}  // namespace

int Ladder::find(const std::string& wanted) const {
  for (std::size_t i = 0; i < levels.size(); ++i)
    if (levels[i].name == wanted) return static_cast<int>(i);
  if (!wanted.empty() && wanted.find_first_not_of("0123456789") == std::string::npos && wanted.size() < 9) {
    const int i = std::atoi(wanted.c_str());
    if (i < static_cast<int>(levels.size())) return i;
  }
  return -1;
}

Ladder load_ladder(const std::filesystem::path& path) {
  return parse_ladder(read_file(path), path.string(), path.stem().string());
}

Ladder parse_ladder(const std::string& text, const std::string& source, const std::string& default_name) {
  const std::filesystem::path path(source);  // param_text() names the source by path
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::Format, source, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("levels") || !j["levels"].is_array() || j["levels"].empty())
    throw Error(ErrorCode::Format, source, "expected an object with a non-empty 'levels' array");
  Ladder ladder;
  ladder.name = j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>() : default_name;
  ladder.description =
      j.contains("description") && j["description"].is_string() ? j["description"].get<std::string>() : "";
  std::set<std::string> names;
  for (std::size_t i = 0; i < j["levels"].size(); ++i) {
    const auto& l = j["levels"][i];
    const std::string where = "levels[" + std::to_string(i) + "]";
    if (!l.is_object() || !l.contains("codec") || !l["codec"].is_string())
      throw Error(ErrorCode::Format, source, where + ": needs a string 'codec'");
    LadderLevel level;
    level.config.codec = l["codec"].get<std::string>();
    level.name =
        l.contains("name") && l["name"].is_string() ? l["name"].get<std::string>() : level.config.codec;
    if (l.contains("params")) {
      if (!l["params"].is_object())
        throw Error(ErrorCode::Format, source, where + ".params must be an object");
      for (const auto& [key, value] : l["params"].items())
        level.config.params[key] = param_text(value, path, where + ".params." + key);
    }
    if (!names.insert(level.name).second)
      throw Error(ErrorCode::Format, source, where + ": duplicate level name '" + level.name + "'");
    ladder.levels.push_back(std::move(level));
  }
  return ladder;
}

std::string ladder_to_json(const Ladder& ladder) {
  nlohmann::json j;
  j["name"] = ladder.name;
  if (!ladder.description.empty()) j["description"] = ladder.description;
  j["levels"] = nlohmann::json::array();
  for (const auto& level : ladder.levels) {
    nlohmann::json l = {{"name", level.name}, {"codec", level.config.codec}};
    if (!level.config.params.empty()) l["params"] = level.config.params;
    j["levels"].push_back(std::move(l));
  }
  return j.dump(2) + "\n";
}

void save_ladder(const Ladder& ladder, const std::filesystem::path& path) {
  const std::string out = ladder_to_json(ladder);
  write_file_atomically(path, out.data(), out.size());
}

std::filesystem::path ladder_dir() {
  return resource_dir() / "ladders";
}
std::filesystem::path default_ladder_path() {
  return ladder_dir() / "default.json";
}

std::string config_key(const codec::CodecConfig& config) {
  std::string key = config.codec;
  char sep = '?';
  for (const auto& [k, v] : config.params) {  // std::map: sorted, so the key is stable
    key += sep + k + "=" + v;
    sep = '&';
  }
  return key;
}

codec::CodecConfig fp16_config() {
  return {"fp16", {}};
}
codec::CodecConfig int8_config() {
  return {"int8", {}};
}

}  // namespace kvscope::stream
