// SPDX-License-Identifier: Apache-2.0
#include "kvscope/eval/dataset.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::eval {

const ContextEntry* DatasetIndex::find_context(const std::string& id) const {
  for (const auto& c : contexts)
    if (c.id == id) return &c;
  return nullptr;
}

const TaskSetEntry* DatasetIndex::find_task_set(const std::string& id) const {
  for (const auto& t : task_sets)
    if (t.id == id) return &t;
  return nullptr;
}

DatasetIndex load_dataset_index(const std::filesystem::path& root_in) {
  DatasetIndex idx;
  idx.root = root_in.empty() ? dataset_dir() : root_in;
  const auto file = idx.root / "index.json";
  const std::string text = read_file(file);
  try {
    const auto j = nlohmann::json::parse(text);
    idx.default_context = j.at("default_context").get<std::string>();
    for (const auto& c : j.at("contexts")) {
      ContextEntry e;
      e.id = c.at("id").get<std::string>();
      e.title = c.at("title").get<std::string>();
      e.kind = c.at("kind").get<std::string>();
      e.path = idx.root / c.at("file").get<std::string>();
      e.source = c.at("source").get<std::string>();
      e.licence = c.at("licence").get<std::string>();
      e.chars = c.at("chars").get<std::size_t>();
      e.bytes = c.at("bytes").get<std::size_t>();
      e.approx_tokens = c.at("approx_tokens").get<std::size_t>();
      idx.contexts.push_back(std::move(e));
    }
    for (const auto& t : j.at("tasks")) {
      TaskSetEntry e;
      e.id = t.at("id").get<std::string>();
      e.description = t.at("description").get<std::string>();
      e.path = idx.root / t.at("file").get<std::string>();
      e.count = t.at("count").get<std::size_t>();
      idx.task_sets.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::Format, file.string(), std::string("bad dataset index: ") + e.what());
  }
  return idx;
}

std::vector<std::string> load_dataset_split(const std::string& name, const std::filesystem::path& root_in) {
  const auto file = (root_in.empty() ? dataset_dir() : root_in) / "splits.json";
  const std::string text = read_file(file);
  nlohmann::json splits;
  try {
    splits = nlohmann::json::parse(text).at("splits");
    if (!splits.is_object()) throw Error(ErrorCode::Format, file.string(), "'splits' is not an object");
    if (splits.contains(name)) return splits.at(name).get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::Format, file.string(), std::string("bad dataset splits: ") + e.what());
  }
  std::string known;
  for (const auto& [k, v] : splits.items()) known += (known.empty() ? "" : ", ") + k;
  throw Error(ErrorCode::InvalidArgument, file.string(), "no split '" + name + "' (known: " + known + ")");
}

std::string load_context_text(const std::string& id_or_path, std::string* label) {
  const auto root = dataset_dir();
  if (std::filesystem::exists(root / "index.json")) {
    const auto idx = load_dataset_index(root);
    if (const auto* c = idx.find_context(id_or_path)) {
      if (label) *label = c->id;
      return read_file(c->path);
    }
  }
  if (!std::filesystem::exists(id_or_path))
    throw Error(ErrorCode::Io, id_or_path, "no such context file, and no dataset context with this id");
  if (label) *label = std::filesystem::path(id_or_path).stem().string();
  return read_file(id_or_path);
}

std::vector<Task> load_tasks(const DatasetIndex& index, const std::string& task_set_id) {
  const auto* set = index.find_task_set(task_set_id);
  if (!set) {
    std::string known;
    for (const auto& t : index.task_sets) known += (known.empty() ? "" : ", ") + t.id;
    throw Error(ErrorCode::InvalidArgument, "unknown task set '" + task_set_id + "' (known: " + known + ")");
  }
  std::istringstream in(read_file(set->path));
  std::vector<Task> tasks;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      tasks.push_back(Task{j.at("id").get<std::string>(), j.at("kind").get<std::string>(),
                           j.at("context").get<std::string>(), j.at("question").get<std::string>(),
                           j.at("answer").get<std::string>()});
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorCode::Format, set->path.string(), "line " + std::to_string(n) + ": " + e.what());
    }
  }
  return tasks;
}

}  // namespace kvscope::eval
