// SPDX-License-Identifier: Apache-2.0
// The shipped datasets (datasets/index.json) are complete and consistent.
#include "kvscope/eval/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::eval {
namespace {

std::filesystem::path root() {
  return std::filesystem::path(KVSCOPE_SOURCE_DIR) / "datasets";
}

TEST(Datasets, IndexListsAtLeastSixContextsThatExist) {
  const auto idx = load_dataset_index(root());
  ASSERT_GE(idx.contexts.size(), 6u);
  std::set<std::string> ids, kinds;
  std::size_t smallest = SIZE_MAX, largest = 0;
  for (const auto& c : idx.contexts) {
    SCOPED_TRACE(c.id);
    EXPECT_TRUE(ids.insert(c.id).second) << "duplicate id";
    kinds.insert(c.kind);
    ASSERT_TRUE(std::filesystem::exists(c.path));
    EXPECT_EQ(read_file(c.path).size(), c.bytes);
    EXPECT_LE(c.bytes, 40000u);  // contexts stay small in the repository
    EXPECT_FALSE(c.licence.empty());
    EXPECT_FALSE(c.source.empty());
    smallest = std::min(smallest, c.approx_tokens);
    largest = std::max(largest, c.approx_tokens);
  }
  EXPECT_LE(smallest, 1300u);
  EXPECT_GE(largest, 7000u);
  for (const char* k : {"prose", "technical", "code", "dialogue", "legal"}) EXPECT_TRUE(kinds.count(k)) << k;
  const auto* def = idx.find_context(idx.default_context);
  ASSERT_NE(def, nullptr);
  EXPECT_EQ(def->kind, "prose");
}

TEST(Datasets, TasksCarryTheirAnswerInTheirContext) {
  const auto idx = load_dataset_index(root());
  ASSERT_NE(idx.find_task_set("passkey"), nullptr);
  ASSERT_NE(idx.find_task_set("line-retrieval"), nullptr);
  for (const auto& set : idx.task_sets) {
    const auto tasks = load_tasks(idx, set.id);
    EXPECT_EQ(tasks.size(), set.count) << set.id;
    for (const auto& t : tasks) {
      SCOPED_TRACE(t.id);
      EXPECT_NE(t.context.find(t.answer), std::string::npos);
      EXPECT_EQ(t.question.find(t.answer), std::string::npos) << "the question must not give the answer away";
    }
  }
}

TEST(Datasets, UnknownTaskSetIsAnError) {
  const auto idx = load_dataset_index(root());
  EXPECT_THROW(load_tasks(idx, "no-such-set"), Error);
}

TEST(Datasets, ContextByIdOrPath) {
  std::string label;
  const auto text =
      load_context_text("kjv-genesis", &label);  // tests run with KVSCOPE_DATA_DIR = source tree
  EXPECT_EQ(label, "kjv-genesis");
  EXPECT_EQ(text.rfind("Chapter 1", 0), 0u);
  const auto path = (root() / "contexts" / "apache-2.0.txt").string();
  EXPECT_EQ(load_context_text(path, &label), read_file(path));
  EXPECT_EQ(label, "apache-2.0");
  EXPECT_THROW(load_context_text("/no/such/file.txt"), Error);
}

}  // namespace
}  // namespace kvscope::eval
