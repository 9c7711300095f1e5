// SPDX-License-Identifier: Apache-2.0
#pragma once

// The evaluation datasets shipped in datasets/ (see datasets/README.md):
// contexts (plain text) and retrieval tasks, listed by datasets/index.json.

#include <filesystem>
#include <string>
#include <vector>

namespace kvscope::eval {

struct ContextEntry {
  std::string id;  ///< e.g. "kjv-genesis"
  std::string title;
  std::string kind;            ///< prose, dialogue, technical, code, legal
  std::filesystem::path path;  ///< absolute path of the text file
  std::string source;          ///< provenance
  std::string licence;
  std::size_t chars = 0;          ///< Unicode characters
  std::size_t bytes = 0;          ///< UTF-8 bytes of the file
  std::size_t approx_tokens = 0;  ///< chars / 4
};

struct Task {
  std::string id;
  std::string kind;      ///< "passkey" or "line_retrieval"
  std::string context;   ///< prefilled, then compressed
  std::string question;  ///< fed after the (decoded) cache
  std::string answer;    ///< must appear in the greedy output
};

struct TaskSetEntry {
  std::string id;  ///< "passkey", "line-retrieval"
  std::string description;
  std::filesystem::path path;
  std::size_t count = 0;
};

struct DatasetIndex {
  std::filesystem::path root;
  std::string default_context;
  std::vector<ContextEntry> contexts;
  std::vector<TaskSetEntry> task_sets;

  /// The context with this id, or nullptr.
  const ContextEntry* find_context(const std::string& id) const;
  const TaskSetEntry* find_task_set(const std::string& id) const;
};

/// Reads `root`/index.json (default root: kvscope::dataset_dir()). Error(Io)
/// when it cannot be read, Error(Format) naming the file when a field is
/// missing or has the wrong type.
DatasetIndex load_dataset_index(const std::filesystem::path& root = {});

/// Text of a context named by id (looked up in the index at the default
/// dataset root) or, when no such id exists, by file path. Error(Io) naming
/// the argument when neither exists. `label` receives the id or file name.
std::string load_context_text(const std::string& id_or_path, std::string* label = nullptr);

/// Context ids of a named split in `root`/splits.json (default root:
/// kvscope::dataset_dir()), e.g. "tune" or "held-out": settings are tuned on
/// one split and reported on another. Error(Io) when the file cannot be read,
/// Error(Format) naming it when malformed, Error(InvalidArgument) listing the
/// known names for an unknown split.
std::vector<std::string> load_dataset_split(const std::string& name, const std::filesystem::path& root = {});

/// Tasks of a task set (by id in the index). Error(InvalidArgument) for an
/// unknown id, Error(Format) naming the file and line for a malformed line.
std::vector<Task> load_tasks(const DatasetIndex& index, const std::string& task_set_id);

}  // namespace kvscope::eval
