// SPDX-License-Identifier: GPL-3.0-or-later
// The in-app ladder editor: edit levels, validate, apply to the streaming run,
// load and save ladder files, and keep the edited ladder in the workspace.
#include "window_fixture.h"

#if KVSCOPE_GUI_HAVE_STREAM
#include <QListWidget>

#include "kvscope/stream/ladder.h"
#include "ladder_editor.h"
#include "param_editor.h"

namespace kvscope::gui {
namespace {

using LadderEditorTest = WindowFixture;

std::string json(const stream::Ladder& l) {
  return stream::ladder_to_json(l);
}

// An edited level is what the streaming run uses: its name and codec show up
// in the chunks, its parameters are the only ones written.
TEST_F(LadderEditorTest, EditedLevelIsWhatTheStreamRuns) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  ASSERT_EQ(panel->ladder(), QStringLiteral("default"));
  LadderEditor* editor = panel->editLadder();
  ASSERT_TRUE(editor->isVisible());
  ASSERT_EQ(json(editor->draft()), json(panel->currentLadder()));
  // Level 0 (finest) becomes a cachegen level with coarse first-group key bins.
  editor->selectLevel(0);
  editor->setLevelName(QStringLiteral("my-cachegen"));
  ASSERT_TRUE(editor->setLevelCodec(QStringLiteral("cachegen")));
  ASSERT_TRUE(editor->paramEditor()->setValue(QStringLiteral("key_bins"), QStringLiteral("4,8,8")));
  const codec::CodecConfig& edited = editor->draft().levels[0].config;
  EXPECT_EQ(edited.codec, "cachegen");
  ASSERT_EQ(edited.params.size(), 1u) << "only the changed parameter is written";
  EXPECT_EQ(edited.params.at("key_bins"), "4,8,8");
  EXPECT_EQ(json(panel->currentLadder()), json(stream::load_ladder(stream::default_ladder_path())))
      << "nothing is applied before Apply";
  ASSERT_TRUE(editor->apply()) << editor->errorText().toStdString();
  EXPECT_EQ(panel->ladder(), QStringLiteral("default (edited)"));
  EXPECT_EQ(panel->currentLadder().levels[0].name, "my-cachegen");

  // A fast link: the adaptive policy sends every chunk at the finest level.
  panel->setChunkTokens(16);
  panel->setRunBaselines(false);
  panel->setProfile(stream::BandwidthProfile::constant(10000));
  panel->setSlo(100);
  ASSERT_TRUE(runStream());
  ASSERT_EQ(panel->reports().size(), 1u);
  const auto& chunks = panel->reports()[0].chunks;
  ASSERT_EQ(chunks.size(), 4u);
  for (const auto& c : chunks) EXPECT_EQ(c.level_name, "my-cachegen");
  // The bytes are the edited configuration's: each chunk encoded with it.
  const auto cache = window().session()->cache();
  std::size_t expected = 0;
  for (int b = 0; b < 64; b += 16)
    expected += codec::encode(cache->slice_tokens(b, b + 16), edited).bytes.size();
  std::size_t sent = 0;
  for (const auto& c : chunks) sent += c.payload_bytes;
  EXPECT_EQ(sent, expected);
}

// Invalid drafts are refused with a message naming the level and the problem;
// the ladder in use does not change.
TEST_F(LadderEditorTest, InvalidLadderIsNotApplied) {
  ASSERT_TRUE(loadSyntheticCache());
  StreamPanel* panel = window().streamPanel();
  const std::string before = json(panel->currentLadder());
  LadderEditor* editor = panel->editLadder();
  // Two levels with one name.
  editor->selectLevel(1);
  editor->setLevelName(QString::fromStdString(editor->draft().levels[0].name));
  EXPECT_FALSE(editor->apply());
  EXPECT_TRUE(editor->errorText().contains(QStringLiteral("level 2"))) << editor->errorText().toStdString();
  EXPECT_TRUE(editor->errorText().contains(QStringLiteral("same name"))) << editor->errorText().toStdString();
  EXPECT_EQ(json(panel->currentLadder()), before);
  editor->setLevelName(QStringLiteral("unique"));
  // Parameters the specs accept but the encoder refuses (bins for two groups,
  // splits for three): found by encoding the first tokens.
  ASSERT_EQ(editor->draft().levels[1].config.codec, "cachegen");
  ASSERT_TRUE(editor->paramEditor()->setValue(QStringLiteral("key_bins"), QStringLiteral("32,16")));
  ASSERT_TRUE(editor->paramEditor()->setValue(QStringLiteral("key_layer_splits"), QStringLiteral("1,2")));
  EXPECT_FALSE(editor->apply());
  EXPECT_TRUE(editor->errorText().contains(QStringLiteral("level 2 (unique)")))
      << editor->errorText().toStdString();
  EXPECT_EQ(json(panel->currentLadder()), before);
  // No levels at all.
  while (!editor->draft().levels.empty()) editor->removeLevel();
  EXPECT_FALSE(editor->apply());
  EXPECT_TRUE(editor->errorText().contains(QStringLiteral("at least one level")));
  EXPECT_EQ(json(panel->currentLadder()), before);
  EXPECT_EQ(panel->ladder(), QStringLiteral("default"));
}

TEST_F(LadderEditorTest, AddRemoveReorderAndFileRoundTrip) {
  StreamPanel* panel = window().streamPanel();
  LadderEditor* editor = panel->editLadder();
  const stream::Ladder original = editor->draft();
  const std::size_t n = original.levels.size();
  ASSERT_GE(n, 2u);
  auto* list = editor->findChild<QListWidget*>(QStringLiteral("ladderLevels"));
  ASSERT_NE(list, nullptr);
  EXPECT_EQ(list->count(), int(n));
  // Add: a uniquely named copy of the selected level, right after it.
  editor->selectLevel(0);
  editor->addLevel();
  ASSERT_EQ(editor->draft().levels.size(), n + 1);
  EXPECT_EQ(editor->currentLevel(), 1);
  EXPECT_EQ(editor->draft().levels[1].name, original.levels[0].name + "-2");
  EXPECT_EQ(list->count(), int(n + 1));
  // Reorder: the copy moves to the coarse end; moving past it does nothing.
  for (std::size_t i = 0; i < n + 2; ++i) editor->moveLevel(1);
  EXPECT_EQ(editor->currentLevel(), int(n));
  EXPECT_EQ(editor->draft().levels.back().name, original.levels[0].name + "-2");
  EXPECT_EQ(editor->draft().levels[1].name, original.levels[1].name);
  editor->moveLevel(-1);
  EXPECT_EQ(editor->draft().levels[n - 1].name, original.levels[0].name + "-2");
  // Remove it again: back to the original.
  editor->removeLevel();
  EXPECT_EQ(json(editor->draft()), json(original));

  // Save and load through core/stream's ladder files.
  editor->selectLevel(int(n) - 1);
  editor->setLevelName(QStringLiteral("coarsest"));
  const QString file = path(QStringLiteral("mine.json"));
  ASSERT_TRUE(editor->saveFile(file)) << editor->errorText().toStdString();
  EXPECT_EQ(json(stream::load_ladder(file.toStdString())), json(editor->draft()));
  const std::string saved = json(editor->draft());
  editor->setLadder(original);
  ASSERT_TRUE(editor->loadFile(file));
  EXPECT_EQ(json(editor->draft()), saved);
  // A broken file is an error naming it; the draft stays.
  const QString broken = writeFile(QStringLiteral("broken.json"), R"({"levels": [)");
  EXPECT_FALSE(editor->loadFile(broken));
  EXPECT_TRUE(editor->errorText().contains(broken)) << editor->errorText().toStdString();
  EXPECT_EQ(json(editor->draft()), saved);
}

// The workspace keeps the edited ladder itself, not just a name.
TEST_F(LadderEditorTest, WorkspaceSavesTheEditedLadder) {
  StreamPanel* panel = window().streamPanel();
  LadderEditor* editor = panel->editLadder();
  editor->selectLevel(0);
  editor->setLevelName(QStringLiteral("renamed"));
  ASSERT_TRUE(editor->setLevelCodec(QStringLiteral("int4")));
  ASSERT_TRUE(editor->apply()) << editor->errorText().toStdString();
  const std::string applied = json(panel->currentLadder());
  const QString ws = path(QStringLiteral("ladder.kvscope"));
  ASSERT_TRUE(window().saveWorkspace(ws));
  newWindow();
  ASSERT_EQ(window().streamPanel()->ladder(), QStringLiteral("default"));
  ASSERT_TRUE(window().loadWorkspace(ws));
  EXPECT_EQ(window().streamPanel()->ladder(), QStringLiteral("default (edited)"));
  EXPECT_EQ(json(window().streamPanel()->currentLadder()), applied);
  // A shipped ladder selected again replaces the edited one.
  ASSERT_TRUE(window().streamPanel()->setLadder(QStringLiteral("quantization")));
  EXPECT_EQ(window().streamPanel()->currentLadder().name, "quantization");
}

}  // namespace
}  // namespace kvscope::gui
#endif
