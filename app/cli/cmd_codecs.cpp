// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli codecs`: every codec and its parameters (what the GUI builds
// its controls from).
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"

namespace kvscope::cli {
namespace {

const char* type_name(codec::ParamSpec::Type t) {
  switch (t) {
    case codec::ParamSpec::Type::Int:
      return "int";
    case codec::ParamSpec::Type::Float:
      return "float";
    case codec::ParamSpec::Type::Bool:
      return "bool";
    case codec::ParamSpec::Type::Choice:
      return "choice";
    case codec::ParamSpec::Type::IntList:
      return "int_list";
    case codec::ParamSpec::Type::Text:
      return "text";
  }
  return "?";
}

const CommandRegistrar codecs_command(230, [](CLI::App& app) {
  auto as_json = std::make_shared<bool>(false);
  auto layers = std::make_shared<int>(0);
  auto* cmd = app.add_subcommand("codecs", "List the codecs and their parameters");
  cmd->add_flag("--json", *as_json, "print JSON");
  cmd->add_option("--layers", *layers, "show defaults for a model with this many layers (default: 30)");
  cmd->callback([as_json, layers] {
    kv::CacheShape shape{*layers > 0 ? *layers : 30, 3, 0, 64};
    nlohmann::json all = nlohmann::json::array();
    for (const codec::Codec* c : codec::all_codecs()) {
      nlohmann::json ps = nlohmann::json::array();
      for (const auto& p : c->params(&shape)) {
        nlohmann::json pj = {
            {"name", p.name}, {"type", type_name(p.type)}, {"default", p.default_value}, {"help", p.help}};
        if (p.type == codec::ParamSpec::Type::Choice)
          pj["choices"] = p.choices;
        else if (p.type != codec::ParamSpec::Type::Bool && p.type != codec::ParamSpec::Type::Text)
          pj["min"] = p.min, pj["max"] = p.max;
        ps.push_back(pj);
      }
      all.push_back({{"name", c->name()}, {"description", c->description()}, {"params", ps}});
    }
    if (*as_json) {
      print_json(all);
      return;
    }
    for (const auto& c : all) {
      std::cout << c["name"].get<std::string>() << ": " << c["description"].get<std::string>() << "\n";
      for (const auto& p : c["params"]) {
        std::cout << "  " << p["name"].get<std::string>() << " (" << p["type"].get<std::string>()
                  << ", default " << p["default"].get<std::string>();
        if (p.contains("min")) std::cout << ", " << p["min"].get<double>() << ".." << p["max"].get<double>();
        if (p.contains("choices")) {
          std::cout << ", one of";
          for (const auto& ch : p["choices"]) std::cout << " " << ch.get<std::string>();
        }
        std::cout << "): " << p["help"].get<std::string>() << "\n";
      }
    }
  });
});

}  // namespace
}  // namespace kvscope::cli
