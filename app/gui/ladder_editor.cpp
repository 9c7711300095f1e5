// SPDX-License-Identifier: GPL-3.0-or-later
#include "ladder_editor.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QScrollArea>
#include <QSignalBlocker>
#include <QVBoxLayout>
#include <algorithm>
#include <set>

#include "help_text.h"
#include "kvscope/common/error.h"
#include "param_editor.h"
#include "session.h"

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}
}  // namespace

QString validateLadder(const stream::Ladder& ladder, const kv::KVCache* cache) {
  if (ladder.name.empty()) return QObject::tr("the ladder needs a name");
  if (ladder.levels.empty()) return QObject::tr("the ladder needs at least one level");
  std::set<std::string> names;
  const kv::CacheShape* shape = cache && !cache->empty() ? &cache->shape() : nullptr;
  // A few tokens are enough to run every parameter check of the real encoder.
  kv::KVCache sample;
  if (shape) sample = cache->slice_tokens(0, std::min(shape->tokens, 32));
  for (std::size_t i = 0; i < ladder.levels.size(); ++i) {
    const stream::LadderLevel& level = ladder.levels[i];
    const QString where = QObject::tr("level %1 (%2)").arg(i + 1).arg(qs(level.name));
    if (level.name.empty()) return QObject::tr("level %1: the level needs a name").arg(i + 1);
    if (!names.insert(level.name).second) return where + QObject::tr(": another level has the same name");
    if (const std::string problem = checkConfig(level.config, shape); !problem.empty())
      return where + QStringLiteral(": ") + qs(problem);
    if (shape) {
      try {
        codec::encode(sample, level.config);
      } catch (const Error& e) {
        return where + QStringLiteral(": ") + QString::fromUtf8(e.what());
      }
    }
  }
  return {};
}

LadderEditor::LadderEditor(Session* session, QWidget* parent) : QDialog(parent), session_(session) {
  setWindowTitle(tr("Edit ladder"));
  setObjectName(QStringLiteral("ladderEditor"));
  ladder_name_ = new QLineEdit;
  ladder_name_->setObjectName(QStringLiteral("ladderName"));
  description_ = new QLineEdit;
  list_ = new QListWidget;
  list_->setObjectName(QStringLiteral("ladderLevels"));
  list_->setToolTip(help::text(help::Concept::Level));
  level_name_ = new QLineEdit;
  level_name_->setObjectName(QStringLiteral("levelName"));
  codec_ = new QComboBox;
  codec_->setObjectName(QStringLiteral("levelCodec"));
  for (const codec::Codec* c : codec::all_codecs()) {
    codec_->addItem(qs(c->name()));
    codec_->setItemData(codec_->count() - 1, qs(c->description()), Qt::ToolTipRole);
  }
  params_ = new ParamEditor;
  params_->setObjectName(QStringLiteral("levelParams"));
  error_ = new QLabel;
  error_->setObjectName(QStringLiteral("ladderError"));
  error_->setWordWrap(true);
  error_->setTextInteractionFlags(Qt::TextSelectableByMouse);

  auto* add = new QPushButton(tr("Add"));
  add->setToolTip(tr("Add a copy of the selected level after it"));
  auto* remove = new QPushButton(tr("Remove"));
  auto* up = new QPushButton(tr("Finer \u2191"));
  up->setToolTip(tr("Move the selected level towards the fine end (top)"));
  auto* down = new QPushButton(tr("Coarser \u2193"));
  down->setToolTip(tr("Move the selected level towards the coarse end (bottom)"));
  auto* load = new QPushButton(tr("Load..."));
  auto* save = new QPushButton(tr("Save..."));
  auto* buttons =
      new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Apply | QDialogButtonBox::Cancel);

  auto* head = new QFormLayout;
  head->addRow(tr("Ladder"), ladder_name_);
  head->addRow(tr("Description"), description_);
  auto* left = new QVBoxLayout;
  left->addWidget(new QLabel(tr("Levels, fine (top) to coarse:")));
  left->addWidget(list_, 1);
  auto* level_buttons = new QHBoxLayout;
  for (QPushButton* b : {add, remove, up, down}) level_buttons->addWidget(b);
  left->addLayout(level_buttons);
  auto* level_box = new QGroupBox(tr("Selected level"));
  auto* level_layout = new QFormLayout(level_box);
  level_layout->addRow(tr("Name"), level_name_);
  level_layout->addRow(tr("Codec"), codec_);
  auto* scroll = new QScrollArea;
  scroll->setWidgetResizable(true);
  scroll->setWidget(params_);
  scroll->setFrameShape(QFrame::NoFrame);
  level_layout->addRow(scroll);
  auto* middle = new QHBoxLayout;
  middle->addLayout(left, 2);
  middle->addWidget(level_box, 3);
  auto* bottom = new QHBoxLayout;
  bottom->addWidget(load);
  bottom->addWidget(save);
  bottom->addWidget(error_, 1);
  bottom->addWidget(buttons);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(head);
  layout->addLayout(middle, 1);
  layout->addLayout(bottom);
  resize(760, 460);

  connect(ladder_name_, &QLineEdit::textEdited, this,
          [this](const QString& t) { draft_.name = t.toStdString(); });
  connect(description_, &QLineEdit::textEdited, this,
          [this](const QString& t) { draft_.description = t.toStdString(); });
  connect(list_, &QListWidget::currentRowChanged, this, [this](int row) {
    if (row != current_) selectLevel(row);
  });
  connect(level_name_, &QLineEdit::textEdited, this, &LadderEditor::setLevelName);
  connect(codec_, &QComboBox::activated, this, [this] { setLevelCodec(codec_->currentText()); });
  connect(params_, &ParamEditor::changed, this, &LadderEditor::storeParams);
  connect(add, &QPushButton::clicked, this, &LadderEditor::addLevel);
  connect(remove, &QPushButton::clicked, this, &LadderEditor::removeLevel);
  connect(up, &QPushButton::clicked, this, [this] { moveLevel(-1); });
  connect(down, &QPushButton::clicked, this, [this] { moveLevel(1); });
  connect(load, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(
        this, tr("Load ladder"), qs(stream::ladder_dir().string()), tr("Ladders (*.json)"));
    if (!path.isEmpty()) loadFile(path);
  });
  connect(save, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save ladder"), qs(draft_.name) + ".json",
                                                      tr("Ladders (*.json)"));
    if (!path.isEmpty()) saveFile(path);
  });
  connect(buttons->button(QDialogButtonBox::Apply), &QPushButton::clicked, this, &LadderEditor::apply);
  connect(buttons, &QDialogButtonBox::accepted, this, [this] {
    if (apply()) accept();
  });
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
}

const kv::CacheShape* LadderEditor::shape() const {
  const auto cache = session_ ? session_->cache() : nullptr;
  return cache && !cache->empty() ? &cache->shape() : nullptr;
}

void LadderEditor::setLadder(const stream::Ladder& ladder) {
  draft_ = ladder;
  ladder_name_->setText(qs(draft_.name));
  description_->setText(qs(draft_.description));
  description_->setCursorPosition(0);
  current_ = -1;
  refreshList();
  selectLevel(draft_.levels.empty() ? -1 : 0);
  error_->clear();
}

void LadderEditor::refreshList() {
  QSignalBlocker block(list_);
  list_->clear();
  for (std::size_t i = 0; i < draft_.levels.size(); ++i) {
    const auto& l = draft_.levels[i];
    QString params;
    for (const auto& [k, v] : l.config.params) params += QStringLiteral(" %1=%2").arg(qs(k), qs(v));
    list_->addItem(tr("%1. %2  [%3]%4").arg(i + 1).arg(qs(l.name), qs(l.config.codec), params));
  }
  list_->setCurrentRow(current_);
}

void LadderEditor::selectLevel(int index) {
  if (index < -1 || index >= static_cast<int>(draft_.levels.size())) return;
  current_ = index;
  {
    QSignalBlocker block(list_);
    list_->setCurrentRow(index);
  }
  showLevel();
}

void LadderEditor::showLevel() {
  const bool has = current_ >= 0;
  level_name_->setEnabled(has);
  codec_->setEnabled(has);
  if (!has) {
    level_name_->clear();
    params_->clear();
    return;
  }
  const stream::LadderLevel& level = draft_.levels[static_cast<std::size_t>(current_)];
  level_name_->setText(qs(level.name));
  QSignalBlocker block(codec_);
  const int i = codec_->findText(qs(level.config.codec));
  codec_->setCurrentIndex(i);
  if (i < 0) {
    params_->clear();  // validation names the unknown codec
    return;
  }
  params_->build(level.config.codec, shape(), false);
  // Values that do not fit a control stay in the draft; validation reports them.
  for (const auto& [k, v] : level.config.params) params_->setValue(qs(k), qs(v), true);
}

void LadderEditor::storeParams() {
  if (current_ < 0 || params_->codec().empty()) return;
  stream::LadderLevel& level = draft_.levels[static_cast<std::size_t>(current_)];
  // What the level gave explicitly stays explicit; anything else only when changed.
  const codec::ParamSet values = params_->values();
  codec::ParamSet out = params_->changedValues();
  for (const auto& [k, v] : level.config.params) {
    auto it = values.find(k);
    out[k] = it != values.end() ? it->second : v;
  }
  level.config.params = std::move(out);
  refreshList();
}

void LadderEditor::setLevelName(const QString& name) {
  if (current_ < 0) return;
  draft_.levels[static_cast<std::size_t>(current_)].name = name.trimmed().toStdString();
  if (level_name_->text() != name) level_name_->setText(name);
  refreshList();
}

bool LadderEditor::setLevelCodec(const QString& codec) {
  if (current_ < 0 || codec_->findText(codec) < 0) return false;
  stream::LadderLevel& level = draft_.levels[static_cast<std::size_t>(current_)];
  if (level.config.codec != codec.toStdString()) level.config = {codec.toStdString(), {}};
  showLevel();
  refreshList();
  return true;
}

void LadderEditor::addLevel() {
  stream::LadderLevel level = current_ >= 0 ? draft_.levels[static_cast<std::size_t>(current_)]
                                            : stream::LadderLevel{"int8", stream::int8_config()};
  const std::string base = level.name;
  for (int n = 2; std::any_of(draft_.levels.begin(), draft_.levels.end(),
                              [&](const auto& l) { return l.name == level.name; });
       ++n)
    level.name = base + "-" + std::to_string(n);
  const int at = current_ + 1;
  draft_.levels.insert(draft_.levels.begin() + at, level);
  current_ = at;
  refreshList();
  showLevel();
}

void LadderEditor::removeLevel() {
  if (current_ < 0) return;
  draft_.levels.erase(draft_.levels.begin() + current_);
  current_ = std::min(current_, static_cast<int>(draft_.levels.size()) - 1);
  refreshList();
  showLevel();
}

void LadderEditor::moveLevel(int delta) {
  const int to = current_ + delta;
  if (current_ < 0 || to < 0 || to >= static_cast<int>(draft_.levels.size())) return;
  std::swap(draft_.levels[static_cast<std::size_t>(current_)], draft_.levels[static_cast<std::size_t>(to)]);
  current_ = to;
  refreshList();
}

void LadderEditor::showError(const QString& message) {
  error_->setStyleSheet(message.isEmpty() ? QString() : QStringLiteral("color: #c0392b;"));
  error_->setText(message);
}

QString LadderEditor::errorText() const {
  return error_->text();
}

bool LadderEditor::apply() {
  const auto cache = session_ ? session_->cache() : nullptr;
  const QString problem = validateLadder(draft_, cache.get());
  if (!problem.isEmpty()) {
    showError(tr("Not applied: %1").arg(problem));
    return false;
  }
  showError({});
  emit applied();
  return true;
}

bool LadderEditor::loadFile(const QString& path) {
  try {
    setLadder(stream::load_ladder(path.toStdString()));
    return true;
  } catch (const Error& e) {
    showError(QString::fromUtf8(e.what()));
    return false;
  }
}

bool LadderEditor::saveFile(const QString& path) {
  const auto cache = session_ ? session_->cache() : nullptr;
  const QString problem = validateLadder(draft_, cache.get());
  if (!problem.isEmpty()) {
    showError(tr("%1: not saved: %2").arg(path, problem));
    return false;
  }
  try {
    stream::save_ladder(draft_, path.toStdString());
  } catch (const Error& e) {
    showError(QString::fromUtf8(e.what()));
    return false;
  }
  showError({});
  return true;
}

}  // namespace kvscope::gui
