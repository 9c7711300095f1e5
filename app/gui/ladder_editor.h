// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QDialog>
#include <QString>

#include "kvscope/stream/ladder.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QListWidget;

namespace kvscope::gui {

class ParamEditor;
class Session;

/// Checks a ladder before it is used: a name, at least one level, unique
/// non-empty level names, every level's codec and parameters valid against
/// the codec's ParamSpecs (checkConfig) and, when `cache` is given, every
/// level encodes its first tokens (catches combinations the specs cannot,
/// e.g. bins per group vs layer splits). Returns an empty string when valid,
/// else one message naming the level and the problem.
QString validateLadder(const stream::Ladder& ladder, const kv::KVCache* cache);

/// Edits a streaming ladder: levels fine -> coarse, each with a name, a codec
/// and its parameters (the same ParamEditor as the codec tuning panel); add,
/// remove and reorder levels; load and save resources/ladders JSON files
/// (core/stream load_ladder/save_ladder). Edits change a draft only: Apply
/// and OK validate it (validateLadder) and, only when it is valid, emit
/// applied(); an invalid draft shows its problem and nothing is applied.
/// Parameters are written only when given in the loaded level or changed
/// from the codec's default, so shape-dependent defaults (layer groups) stay
/// the codec's choice for whatever model streams.
class LadderEditor : public QDialog {
  Q_OBJECT

 public:
  explicit LadderEditor(Session* session, QWidget* parent = nullptr);

  /// Replaces the draft and selects its first level.
  void setLadder(const stream::Ladder& ladder);
  /// The draft as edited so far (not validated).
  const stream::Ladder& draft() const { return draft_; }

  int currentLevel() const { return current_; }
  void selectLevel(int index);
  /// The parameters of the selected level.
  ParamEditor* paramEditor() const { return params_; }
  void setLevelName(const QString& name);
  /// Switches the selected level to `codec` with its default parameters.
  bool setLevelCodec(const QString& codec);
  /// Inserts a copy of the selected level after it (or an int8 level when
  /// there is none), named uniquely, and selects it.
  void addLevel();
  void removeLevel();
  /// Moves the selected level by `delta` places (-1 finer, +1 coarser).
  void moveLevel(int delta);

  /// Validates the draft; on success emits applied() and returns true, else
  /// shows the problem (errorText()) and returns false.
  bool apply();
  QString errorText() const;
  /// Loads a ladder file into the draft; false (and errorText()) on error.
  bool loadFile(const QString& path);
  /// Validates the draft and writes it to `path`; false (and errorText()) on error.
  bool saveFile(const QString& path);

 signals:
  /// The draft was validated and applied; read it with draft().
  void applied();

 private:
  void refreshList();
  void showLevel();
  void storeParams();
  void showError(const QString& message);
  const kv::CacheShape* shape() const;

  Session* session_;
  stream::Ladder draft_;
  int current_ = -1;
  QLineEdit* ladder_name_;
  QLineEdit* description_;
  QListWidget* list_;
  QLineEdit* level_name_;
  QComboBox* codec_;
  ParamEditor* params_;
  QLabel* error_;
};

}  // namespace kvscope::gui
