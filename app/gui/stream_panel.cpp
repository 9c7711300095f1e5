// SPDX-License-Identifier: GPL-3.0-or-later
#include "stream_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMouseEvent>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>
#include <cmath>

#include "help_text.h"
#include "job_runner.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/stream/ladder.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/model_recomputer.h"
#include "ladder_editor.h"
#include "on_screen.h"
#include "session.h"
#include "stream_timeline.h"
#if KVSCOPE_GUI_HAVE_EVAL
#include "quality_service.h"
#endif

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}
std::filesystem::path toPath(const QString& s) {
  return std::filesystem::path(s.toStdString());
}
QDir scenarioDir() {
  return QDir(QString::fromStdString((resource_dir() / "scenarios").string()));
}

// What a piecewise trace does, for a trace the user edited (the preset's own
// description no longer holds).
std::string describeSteps(const std::vector<stream::ProfilePoint>& points) {
  QStringList parts;
  for (const auto& p : points)
    parts << QStringLiteral("%1 Mbit/s from %2 s").arg(p.mbps, 0, 'g', 3).arg(p.time_s, 0, 'g', 3);
  return QStringLiteral("Edited: %1.").arg(parts.join(QStringLiteral(", "))).toStdString();
}

// A tokens/s field whose 0 means "measured".
QDoubleSpinBox* rateSpinBox(const QString& name, double most, double step, const QString& tip) {
  auto* box = new QDoubleSpinBox;
  box->setObjectName(name);
  box->setRange(0, most);
  box->setDecimals(0);
  box->setSingleStep(step);
  box->setSuffix(QObject::tr(" tokens/s"));
  box->setSpecialValueText(QObject::tr("measured"));
  box->setToolTip(tip);
  return box;
}

enum Column { Policy, Load, Loaded, Query, FirstToken, SloMet, Sent, Levels, Text, Kl, Top1, Ppl, Columns };
/// The query asked after the context: its prefill and first token are part of TTFT.
constexpr const char* kQuery = "\n\nQuestion: What is the text above about?\nAnswer:";
}  // namespace

StreamPanel::StreamPanel(Session* session, QWidget* parent)
    : QWidget(parent),
      session_(session),
      when_shown_(new WhenShown(this, [this] { startPrepare(); })),
      runner_(std::make_unique<JobRunner>(QStringLiteral("stream"))),
      prepare_runner_(std::make_unique<JobRunner>(QStringLiteral("stream chunks"))) {
  scenario_ = new QComboBox;
  scenario_->setObjectName(QStringLiteral("scenarioCombo"));
  scenario_->setToolTip(
      tr("A ready-made setup (resources/scenarios): bandwidth trace, SLO, chunk size and "
         "ladder. Change any part afterwards."));
  for (const QString& name : scenarios()) scenario_->addItem(name);
  preset_ = new QComboBox;
  preset_->setObjectName(QStringLiteral("profilePreset"));
  for (const std::string& name : stream::preset_profile_names()) preset_->addItem(qs(name));
  auto* import_csv = new QPushButton(tr("Import..."));
  auto* export_csv = new QPushButton(tr("Export..."));
  slo_ = new QDoubleSpinBox;
  slo_->setRange(kMinSlo, kMaxSlo);
  slo_->setDecimals(2);
  slo_->setSingleStep(0.1);
  slo_->setValue(2.0);
  slo_->setSuffix(tr(" s"));
  slo_->setToolTip(help::text(help::Concept::Slo));
  chunk_tokens_ = new QSpinBox;
  chunk_tokens_->setRange(kMinChunkTokens, kMaxChunkTokens);
  chunk_tokens_->setValue(512);
  chunk_tokens_->setSuffix(tr(" tokens"));
  chunk_tokens_->setToolTip(tr("Tokens per chunk; each chunk is encoded independently at every level."));
  ladder_combo_ = new QComboBox;
  ladder_combo_->setObjectName(QStringLiteral("ladderCombo"));
  ladder_combo_->setToolTip(help::text(help::Concept::Level));
  const QDir ladders(QString::fromStdString(stream::ladder_dir().string()));
  for (const QFileInfo& f : ladders.entryInfoList({QStringLiteral("*.json")}, QDir::Files, QDir::Name))
    ladder_combo_->addItem(f.completeBaseName(), f.absoluteFilePath());
  auto* edit_ladder = new QPushButton(tr("Edit..."));
  edit_ladder->setObjectName(QStringLiteral("editLadderButton"));
  edit_ladder->setToolTip(tr("Edit the ladder's levels, codecs and parameters; load or save ladder files."));
  time_scale_ = new QDoubleSpinBox;
  time_scale_->setRange(0.1, 1000);
  time_scale_->setValue(1.0);
  time_scale_->setPrefix(tr("x"));
  time_scale_->setToolTip(
      tr("Real transport: trace seconds per wall second (transfers sped up, decode real)."));
  simulate_ = new QCheckBox(tr("simulated clock"));
  simulate_->setObjectName(QStringLiteral("simulateCheck"));
  simulate_->setChecked(true);
  simulate_->setToolTip(
      tr("On: the same policy and decoder on a simulated clock (instant; decode times from measured "
         "per-token speeds, text recompute at the prefill's measured rate). Off: chunks go over a real TCP "
         "connection on 127.0.0.1 paced by the trace."));
  baselines_ = new QCheckBox(tr("baselines fp16, int8, text"));
  baselines_->setChecked(true);
  store_spec_ = new QComboBox;
  store_spec_->setObjectName(QStringLiteral("storeCombo"));
  store_spec_->setEditable(true);
  store_spec_->addItem(QStringLiteral("memory:"));
  store_spec_->setToolTip(
      tr("Where the chunks are loaded from. memory: publishes them in this process (real mode sends them "
         "through an in-process sender on 127.0.0.1); dir:PATH, redis://HOST:PORT[,HOST:PORT...] (a server "
         "or a cluster) or tcp://HOST:PORT (a kvscope-cli serve sender): Run publishes the context there, "
         "then loads it from there. See docs/streaming.md."));
  recompute_rate_ = rateSpinBox(
      QStringLiteral("recomputeRate"), 1e7, 100,
      tr("Recompute rate: what text chunks and the query's prefill are charged. \"measured\": the model's "
         "prefill speed on this machine (simulated clock: of the context when it was prefilled); or set a "
         "rate (a faster receiver)."));
  decode_rate_ = rateSpinBox(
      QStringLiteral("decodeRate"), 1e9, 1000,
      tr("Decode rate: what the receiver's decode of a chunk is charged (simulated clock) and what the "
         "policy plans with. \"measured\": each chunk's decode time at each level, measured on this "
         "machine when it was encoded; or set one rate for every level (a faster or slower receiver)."));
  run_ = new QPushButton(tr("Run"));
  run_->setObjectName(QStringLiteral("runStreamButton"));
  stop_ = new QPushButton(tr("Stop"));
  stop_->setEnabled(false);
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  progress_->setFormat(QString());
  status_ = new QLabel(tr("Prefill a context, pick a scenario and Run."));
  status_->setWordWrap(true);
  status_->setObjectName(QStringLiteral("streamStatus"));
  status_->setFixedHeight(status_->fontMetrics().lineSpacing() * 2 + 4);
  status_->setAlignment(Qt::AlignTop | Qt::AlignLeft);

  timeline_ = new StreamTimeline;
  timeline_->installEventFilter(this);
  timeline_->setToolTip(QString());

  // TTFT and its parts: context loaded + the query's prefill + the first token.
  table_ = new QTableWidget(0, Columns);
  table_->setObjectName(QStringLiteral("streamTable"));
  table_->setHorizontalHeaderLabels({tr("policy"), tr("TTFT (s)"), tr("loaded (s)"), tr("query (s)"),
                                     tr("first token (s)"), tr("SLO met"), tr("MB sent"), tr("levels used"),
                                     tr("chunks as text"), tr("KL [95%]"), tr("top-1 %"), tr("Δppl %")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setStretchLastSection(true);
  table_->verticalHeader()->setVisible(false);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 6);
  // Four rows (adaptive and three baselines) always visible.
  table_->setMinimumHeight(table_->horizontalHeader()->sizeHint().height() +
                           4 * table_->verticalHeader()->defaultSectionSize() + 6);
  table_->setToolTip(
      tr("Per policy: when the whole context was loaded and what it cost, and how the model "
         "continues from the cache it delivered (KL to the fp16 cache with its 95% interval, "
         "top-1 agreement, perplexity change)."));

  auto* form = new QFormLayout;
  form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
  auto* scenario_row = new QHBoxLayout;
  scenario_row->addWidget(scenario_, 1);
  scenario_row->addWidget(new QLabel(tr("trace")));
  scenario_row->addWidget(preset_, 1);
  scenario_row->addWidget(import_csv);
  scenario_row->addWidget(export_csv);
  form->addRow(tr("Scenario"), scenario_row);
  auto* slo_row = new QHBoxLayout;
  slo_row->addWidget(slo_);
  slo_row->addWidget(new QLabel(tr("chunk")));
  slo_row->addWidget(chunk_tokens_);
  slo_row->addWidget(new QLabel(tr("ladder")));
  slo_row->addWidget(ladder_combo_, 1);
  slo_row->addWidget(edit_ladder);
  form->addRow(tr("SLO"), slo_row);
  auto* run_row = new QHBoxLayout;
  run_row->addWidget(run_);
  run_row->addWidget(stop_);
  run_row->addWidget(simulate_);
  run_row->addWidget(new QLabel(tr("speed")));
  run_row->addWidget(time_scale_);
  run_row->addWidget(baselines_);
  run_row->addWidget(progress_, 1);
  form->addRow(tr("Run"), run_row);
  auto* store_row = new QHBoxLayout;
  store_row->addWidget(store_spec_, 1);
  store_row->addWidget(new QLabel(tr("recompute")));
  store_row->addWidget(recompute_rate_);
  store_row->addWidget(new QLabel(tr("decode")));
  store_row->addWidget(decode_rate_);
  form->addRow(tr("Store"), store_row);
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->setChildrenCollapsible(false);
  splitter->addWidget(timeline_);
  splitter->addWidget(table_);
  splitter->setStretchFactor(0, 1);
  splitter->setStretchFactor(1, 0);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(form);
  layout->addWidget(status_);
  layout->addWidget(splitter, 1);

  connect(scenario_, &QComboBox::activated, this, [this] {
    QString error;
    if (!setScenario(scenario_->currentText(), &error)) emit errorOccurred(tr("Scenario"), error);
  });
  connect(preset_, &QComboBox::activated, this, [this] {
    if (preset_->currentData().toBool()) return;  // the trace in use, not a preset
    try {
      setProfile(stream::resolve_profile(preset_->currentText().toStdString()));
    } catch (const Error& e) {
      emit errorOccurred(tr("Bandwidth trace"), QString::fromUtf8(e.what()));
    }
  });
  connect(import_csv, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Import bandwidth trace"), QString(),
                                                      tr("Bandwidth traces (*.csv *.json)"));
    QString error;
    if (!path.isEmpty() && !loadProfileFile(path, &error)) emit errorOccurred(tr("Import trace"), error);
  });
  connect(export_csv, &QPushButton::clicked, this, [this] {
    const QString path =
        QFileDialog::getSaveFileName(this, tr("Export bandwidth trace"), QStringLiteral("trace.csv"),
                                     tr("Bandwidth traces (*.csv *.json)"));
    if (path.isEmpty()) return;
    try {
      stream::save_profile(profile_, toPath(path));
    } catch (const Error& e) {
      emit errorOccurred(tr("Export trace"), QString::fromUtf8(e.what()));
    }
  });
  connect(slo_, &QDoubleSpinBox::valueChanged, this, [this](double s) { timeline_->setSlo(s); });
  connect(ladder_combo_, &QComboBox::currentIndexChanged, this, [this](int index) {
    QString error;
    if (!loadLadderItem(index, &error)) emit errorOccurred(tr("Ladder"), error);
    prepareAhead();
  });
  connect(edit_ladder, &QPushButton::clicked, this, &StreamPanel::editLadder);
  connect(chunk_tokens_, &QSpinBox::valueChanged, this, [this] {
    store_.reset();
    prepareAhead();
  });
  connect(session_, &Session::cacheChanged, this, [this] {
    store_.reset();
    prepareAhead();
  });
  connect(run_, &QPushButton::clicked, this, &StreamPanel::run);
  connect(stop_, &QPushButton::clicked, this, &StreamPanel::stop);
  connect(runner_.get(), &JobRunner::busyChanged, this, [this](bool busy) {
    stop_->setEnabled(busy);
    run_->setEnabled(!busy);
  });
  connect(runner_.get(), &JobRunner::progress, this, [this](double f, const QString& stage) {
    progress_->setValue(static_cast<int>(f * 1000));
    progress_->setFormat(stage);
  });
  connect(runner_.get(), &JobRunner::failed, this, [this](const QString& title, const QString& message) {
    progress_->setFormat(tr("failed"));
    emit errorOccurred(title, message);
  });
  connect(runner_.get(), &JobRunner::cancelled, this, [this] {
    status_->setText(tr("Stopped."));
    progress_->setFormat(tr("stopped"));
  });

  // Defaults: the teaching scenario when shipped, else wifi-drop and the default ladder.
  const int def_ladder = ladder_combo_->findText(QStringLiteral("default"));
  if (def_ladder >= 0) ladder_combo_->setCurrentIndex(def_ladder);
  QString error;
  if (ladder_combo_->count() > 0 && ladder_.levels.empty() &&
      !loadLadderItem(ladder_combo_->currentIndex(), &error))
    status_->setText(error);
  timeline_->setSlo(slo_->value());
  if (!setScenario(QString::fromLatin1(kDefaultScenario))) {
    const int def = preset_->findText(QStringLiteral("wifi-drop"));
    if (def >= 0) preset_->setCurrentIndex(def);
    try {
      if (preset_->count() > 0) setProfile(stream::resolve_profile(preset_->currentText().toStdString()));
    } catch (const Error&) {
    }
  }
}

StreamPanel::~StreamPanel() {
  prepare_runner_.reset();
  runner_.reset();
}

std::vector<std::pair<QString, stream::Policy>> StreamPanel::policies() const {
  std::vector<std::pair<QString, stream::Policy>> out;
  out.emplace_back(QStringLiteral("adaptive"), stream::parse_policy("adaptive", ladder_));
  if (baselines_->isChecked())
    for (const char* name : {"fp16", "int8", "text"})
      out.emplace_back(QString::fromLatin1(name), stream::parse_policy(name, ladder_));
  return out;
}

std::shared_ptr<stream::EncodedContext> StreamPanel::currentStore() {
  const auto cache = session_->cache();
  if (!cache || cache->empty()) return nullptr;
  if (!store_ || store_->shared_cache() != cache || store_->chunk_tokens() != chunk_tokens_->value())
    store_ = std::make_shared<stream::EncodedContext>(cache, chunk_tokens_->value());
  return store_;
}

void StreamPanel::prepareAhead() {
  when_shown_->request();
}

void StreamPanel::startPrepare() {
  if (runner_->busy() || ladder_.levels.empty()) return;
  auto store = currentStore();
  if (!store) return;
  const auto todo = policies();
  prepare_runner_->start(tr("Encoding stream chunks"), [store, todo](const ProgressFn& progress) {
    for (const auto& [name, policy] : todo) {
      if (policy.kind == stream::Policy::Kind::Text) continue;
      stream::PrepareOptions prep;
      prep.progress = progress;
      stream::prepare_stream(*store, policy, prep);
    }
    return std::function<void()>([] {});
  });
}

QStringList StreamPanel::scenarios() const {
  QStringList names;
  for (const QFileInfo& f :
       scenarioDir().entryInfoList({QStringLiteral("*.kvscope")}, QDir::Files, QDir::Name))
    names << f.completeBaseName();
  // The default first.
  if (names.removeOne(QString::fromLatin1(kDefaultScenario)))
    names.prepend(QString::fromLatin1(kDefaultScenario));
  return names;
}

bool StreamPanel::setScenario(const QString& name, QString* error) {
  const QString file = scenarioDir().filePath(name + QStringLiteral(".kvscope"));
  try {
    const Workspace w = readWorkspace(file);
    applyWorkspace(w, [error](const QString& message) {
      if (error) *error = message;
    });
  } catch (const Error& e) {
    if (error) *error = QString::fromUtf8(e.what());
    return false;
  }
  QSignalBlocker block(scenario_);
  scenario_->setCurrentIndex(scenario_->findText(name));
  return true;
}

void StreamPanel::setSlo(double seconds) {
  slo_->setValue(seconds);
}
void StreamPanel::setChunkTokens(int tokens) {
  chunk_tokens_->setValue(tokens);
}
double StreamPanel::slo() const {
  return slo_->value();
}
int StreamPanel::chunkTokens() const {
  return chunk_tokens_->value();
}
QString StreamPanel::ladder() const {
  return ladder_combo_->currentText();
}
bool StreamPanel::setLadder(const QString& name) {
  const int i = ladder_combo_->findText(name);
  if (i < 0 || ladder_combo_->itemData(i).toString().isEmpty()) return false;
  // Edited entries sit after the shipped ones, so dropping them keeps index i.
  if (!loadLadderItem(i, nullptr)) return false;
  QSignalBlocker block(ladder_combo_);
  ladder_combo_->setCurrentIndex(i);
  return true;
}

bool StreamPanel::loadLadderItem(int index, QString* error) {
  const QString file = ladder_combo_->itemData(index).toString();
  if (file.isEmpty()) return true;  // the edited ladder: already in ladder_
  try {
    ladder_ = stream::load_ladder(toPath(file));
  } catch (const Error& e) {
    if (error) *error = QString::fromUtf8(e.what());
    return false;
  }
  // A shipped ladder replaces an edited one: drop its entry.
  for (int i = ladder_combo_->count() - 1; i >= 0; --i)
    if (ladder_combo_->itemData(i).toString().isEmpty()) {
      QSignalBlocker block(ladder_combo_);
      ladder_combo_->removeItem(i);
    }
  return true;
}

void StreamPanel::setLadder(const stream::Ladder& ladder) {
  // The same ladder as a shipped file of that name is shown as that file.
  const int shipped = ladder_combo_->findText(qs(ladder.name));
  if (shipped >= 0 && !ladder_combo_->itemData(shipped).toString().isEmpty()) {
    try {
      if (stream::ladder_to_json(stream::load_ladder(toPath(ladder_combo_->itemData(shipped).toString()))) ==
          stream::ladder_to_json(ladder)) {
        QSignalBlocker block(ladder_combo_);
        ladder_combo_->setCurrentIndex(shipped);
        loadLadderItem(shipped, nullptr);
        return;
      }
    } catch (const Error&) {
    }
  }
  ladder_ = ladder;
  QSignalBlocker block(ladder_combo_);
  for (int i = ladder_combo_->count() - 1; i >= 0; --i)
    if (ladder_combo_->itemData(i).toString().isEmpty()) ladder_combo_->removeItem(i);
  ladder_combo_->addItem(tr("%1 (edited)").arg(qs(ladder.name)), QString());
  ladder_combo_->setCurrentIndex(ladder_combo_->count() - 1);
  prepareAhead();
}

LadderEditor* StreamPanel::editLadder() {
  if (!ladder_editor_) {
    ladder_editor_ = new LadderEditor(session_, this);
    connect(ladder_editor_, &LadderEditor::applied, this, [this] { setLadder(ladder_editor_->draft()); });
  }
  ladder_editor_->setLadder(ladder_);
  ladder_editor_->show();
  ladder_editor_->raise();
  return ladder_editor_;
}

void StreamPanel::applyWorkspace(const Workspace& w, const std::function<void(const QString&)>& error) {
  if (w.profile) setProfile(*w.profile);
  if (w.slo_s) setSlo(*w.slo_s);
  if (w.chunk_tokens) setChunkTokens(*w.chunk_tokens);
  if (w.ladder) setLadder(*w.ladder);
  if (!w.ladder_file.isEmpty() && !setLadder(w.ladder_file) && error)
    error(tr("ladder \"%1\" does not load").arg(w.ladder_file));
}

void StreamPanel::setRunBaselines(bool on) {
  baselines_->setChecked(on);
}

void StreamPanel::setSimulated(bool on) {
  simulate_->setChecked(on);
}

void StreamPanel::setProfile(const stream::BandwidthProfile& profile) {
  profile_ = profile;
  // The trace's own name in the list: a preset's, or an extra entry for one
  // from a scenario, a file or an edit (so the list never names another trace).
  QSignalBlocker block(preset_);
  for (int i = preset_->count() - 1; i >= 0; --i)
    if (preset_->itemData(i).toBool()) preset_->removeItem(i);
  int preset = preset_->findText(qs(profile.name()));
  if (preset < 0) {
    preset_->addItem(qs(profile.name()), true);
    preset = preset_->count() - 1;
  }
  preset_->setCurrentIndex(preset);
  redrawProfile();
}

bool StreamPanel::loadProfileFile(const QString& path, QString* error) {
  try {
    setProfile(stream::load_profile(toPath(path)));
    return true;
  } catch (const Error& e) {
    if (error) *error = QString::fromUtf8(e.what());
    return false;
  }
}

void StreamPanel::redrawProfile() {
  timeline_->setProfile(profile_);
  status_->setText(qs(profile_.name()) + QStringLiteral(": ") + qs(profile_.description()));
}

bool StreamPanel::eventFilter(QObject* watched, QEvent* event) {
  // Drag a trace point vertically: a new piecewise trace with that rate.
  if (watched != timeline_ || profile_.kind() != stream::BandwidthProfile::Kind::Piecewise)
    return QWidget::eventFilter(watched, event);
  auto* mouse = dynamic_cast<QMouseEvent*>(event);
  if (!mouse) return QWidget::eventFilter(watched, event);
  const QPointF pos = mouse->position();
  QCPAxis* time = timeline_->timeAxis(0);
  QCPAxis* rate = timeline_->bandwidthAxis();
  if (event->type() == QEvent::MouseButtonPress && mouse->button() == Qt::LeftButton) {
    const auto& points = profile_.points();
    for (int i = 0; i < static_cast<int>(points.size()); ++i) {
      const double px = time->coordToPixel(points[std::size_t(i)].time_s);
      const double py = rate->coordToPixel(points[std::size_t(i)].mbps);
      if (std::hypot(px - pos.x(), py - pos.y()) < 8) {
        drag_index_ = i;
        return true;  // not a pan
      }
    }
  } else if (event->type() == QEvent::MouseMove && drag_index_ >= 0) {
    auto points = profile_.points();
    points[std::size_t(drag_index_)].mbps = std::max(0.01, rate->pixelToCoord(pos.y()));
    try {
      auto edited = stream::BandwidthProfile::piecewise(points);
      edited.set_name(profile_.name() + (profile_.name().ends_with(" (edited)") ? "" : " (edited)"));
      edited.set_description(describeSteps(points));
      profile_ = edited;
      QVector<double> x, y;
      for (const auto& p : profile_.points()) x << p.time_s, y << p.mbps;
      x << std::max(x.back() + 1.0, 60.0), y << y.back();
      timeline_->traceGraph()->setData(x, y, true);
      timeline_->replot(QCustomPlot::rpQueuedReplot);
    } catch (const Error&) {
    }
    return true;
  } else if (event->type() == QEvent::MouseButtonRelease && drag_index_ >= 0) {
    drag_index_ = -1;
    setProfile(profile_);  // named "(edited)" in the list, described by its new steps
    return true;
  }
  return QWidget::eventFilter(watched, event);
}

void StreamPanel::run() {
  const auto cache = session_->cache();
  if (!cache || cache->empty()) {
    status_->setText(tr("Prefill a context first."));
    return;
  }
  if (ladder_.levels.empty()) {
    emit errorOccurred(tr("Ladder"), tr("No ladder: pick one or edit one (Edit...)."));
    return;
  }
  run_started_ms_ = QDateTime::currentMSecsSinceEpoch();
  // What the background preparation encoded is kept; the run encodes the rest.
  prepare_runner_->cancel();
  const stream::Ladder ladder = ladder_;
  const auto policies = this->policies();
  auto store = currentStore();
  stream::StreamConfig config;
  config.slo_s = slo_->value();
  config.simulate = simulate_->isChecked();
  config.time_scale = time_scale_->value();
  // Simulated: decode times from the per-token speeds prepare() measured, so
  // a run is instant and its timeline does not jitter with the machine's load.
  config.model_decode_time = config.simulate;
  if (decode_rate_->value() > 0) config.modelled_decode_seconds_per_token = 1.0 / decode_rate_->value();
  // The decoded caches are kept only when their quality will be measured.
  config.keep_assembled_cache = quality_ != nullptr;
  const stream::BandwidthProfile profile = profile_;
  const std::string store_spec = store_spec_->currentText().trimmed().toStdString();
  const double edited_rate = recompute_rate_->value();
  // This machine's prefill speed on the context, measured when it was prefilled.
  [[maybe_unused]] const double prefill_rate = session_->prefillTokensPerSecond();
  auto rate_cache = rate_cache_;
#if KVSCOPE_GUI_HAVE_MODEL
  // The model must outlive the recomputer and the query: the job keeps its shared_ptr.
  auto model_keepalive = session_->model();
  if (!model_keepalive || cache->info.token_ids.empty()) model_keepalive.reset();
#endif
  reports_.clear();
  pending_quality_.clear();
  table_->setRowCount(0);
  QStringList levels;
  for (const auto& l : ladder.levels) levels << qs(l.name);
  timeline_->setLevels(levels);
  timeline_->setSlo(config.slo_s);
  timeline_->resetView();
  progress_->setFormat(tr("encoding chunks"));
  const quint64 gen = runner_->generation() + 1;  // the job about to start
  runner_->start(tr("Streaming"), [=, this](const ProgressFn& progress) {
    // The receiver's compute (docs/streaming.md, "Delay model"): text chunks
    // and the query, charged at the recompute rate set, else measured. Real
    // mode recomputes text chunks with the model over the decoded prefix;
    // simulated runs stay instant: text is charged at this machine's prefill
    // rate of the context and its KV taken from the cache (no model run).
    std::optional<stream::Recomputer> recompute;
    std::optional<stream::QueryCost> query;
#if KVSCOPE_GUI_HAVE_MODEL
    if (model_keepalive && cache->info.token_ids.size() >= 16) {
      stream::RecomputeRate rate;
      if (config.simulate && prefill_rate > 0) {
        rate.tokens_per_s = prefill_rate;
        rate.first_token_s = 1.0 / prefill_rate;  // one token's forward pass, at the same speed
        rate.source = "this machine's prefill of the context";
      } else {
        // Measured once per model (a few prefills), then kept.
        std::lock_guard lock(rate_cache->mutex);
        if (rate_cache->model != model_keepalive.get() || !rate_cache->rate) {
          progress(0.0, "measuring the recompute rate");
          rate_cache->rate = stream::measure_recompute_rate(*model_keepalive, cache->info.token_ids);
          rate_cache->model = model_keepalive.get();
        }
        rate = *rate_cache->rate;
      }
      if (edited_rate > 0) {
        rate.tokens_per_s = edited_rate;
        rate.source = "set in the panel";
      }
      recompute = config.simulate ? stream::fixed_rate_recomputer(cache, rate.tokens_per_s)
                                  : stream::model_recomputer(*model_keepalive, rate);
      const auto ids = model_keepalive->tokenizer().encode(kQuery, false);
      if (!ids.empty() && config.simulate) {
        // Simulated: the query charged at the rate, like every other cost
        // of a simulated run (the same answer whatever the machine's load).
        query = stream::query_at_rate(int(ids.size()), rate);
      } else if (!ids.empty()) {
        query = stream::model_query(*model_keepalive, ids, rate);
        // Timed once per Run: the time does not depend on the cache's values.
        auto measured = std::make_shared<std::optional<std::pair<double, double>>>();
        query->measure = [inner = query->measure, measured](const kv::KVCache& assembled) {
          if (!*measured) *measured = inner(assembled);
          return **measured;
        };
      }
    }
#endif
    if (!recompute && edited_rate > 0 && !cache->info.token_ids.empty())
      recompute = stream::fixed_rate_recomputer(cache, edited_rate);
    // Another store than memory: publish there once, load from there.
    std::unique_ptr<stream::ChunkStore> remote;
    if (store_spec != "memory:" && !store_spec.empty()) remote = stream::open_store(store_spec);
    for (const auto& [name, policy] : policies) {
      if (policy.kind == stream::Policy::Kind::Text && !recompute) continue;
      stream::PrepareOptions prep;
      prep.progress = [&](double f, std::string_view) {
        return progress(f, "encoding chunks for " + name.toStdString());
      };
      stream::prepare_stream(*store, policy, prep);
      stream::StreamHooks hooks;
      hooks.recompute = recompute;
      hooks.progress = [&](double f, std::string_view) {
        return progress(f, "streaming " + name.toStdString());
      };
      if (name == QLatin1String("adaptive")) {
        // Live view of the adaptive run's levels: events queued to the GUI
        // thread (dropped if a newer run started).
        hooks.on_event = [this, gen](const stream::StreamEvent& e) {
          if (e.type != stream::StreamEvent::Type::DecodeEnd) return;
          QMetaObject::invokeMethod(
              this,
              [this, gen, e] {
                if (gen == runner_->generation()) onEvent(e, QStringLiteral("adaptive"));
              },
              Qt::QueuedConnection);
        };
      }
      stream::StreamConfig run_config = config;
      run_config.policy = policy;
      hooks.query = query;
      stream::StreamReport report;
      if (remote && policy.kind != stream::Policy::Kind::Text) {
        stream::publish(*store, policy.levels, *remote);
        auto manifest = stream::load_manifest(*remote, stream::context_id(*cache), store->chunk_tokens());
        if (!manifest)
          throw Error(ErrorCode::Io, remote->describe() + ": the manifest just published is gone");
        stream::StreamSource source{remote.get(), std::move(*manifest), cache->info.token_ids};
        report = stream::run_stream(source, profile, run_config, hooks);
      } else {
        report = stream::run_stream(*store, profile, run_config, hooks);
      }
      report.policy = name.toStdString();
      QMetaObject::invokeMethod(
          this,
          [this, gen, report] {
            if (gen == runner_->generation()) addReport(report);
          },
          Qt::QueuedConnection);
    }
    return std::function<void()>([this] {
      last_wall_s_ = double(QDateTime::currentMSecsSinceEpoch() - run_started_ms_) / 1000.0;
#if KVSCOPE_GUI_HAVE_EVAL
      for (const auto& [cache, policy] : pending_quality_) quality_->decoded(cache, policy);
      pending_quality_.clear();
#endif
      progress_->setValue(1000);
      progress_->setFormat(tr("done in %1 s").arg(last_wall_s_, 0, 'f', 2));
      QStringList verdicts;
      for (const auto& r : reports_)
        verdicts << tr("%1 %2 s%3")
                        .arg(qs(r.policy))
                        .arg(r.ttft_s, 0, 'f', 2)
                        .arg(r.slo_met ? QString() : tr(" (missed)"));
      status_->setText(tr("SLO %1 s: %2. Hover the adaptive run's chunks for why each level was chosen.")
                           .arg(slo_->value(), 0, 'f', 2)
                           .arg(verdicts.join(QStringLiteral(", "))));
      emit finished();
    });
  });
}

void StreamPanel::stop() {
  runner_->cancel();
}

void StreamPanel::onEvent(const stream::StreamEvent& e, const QString& policy) {
  timeline_->addAdaptiveChunk(e.chunk, slo_->value());
  const stream::ChunkRecord& c = e.chunk;
  status_->setText(tr("%1: chunk %2 as %3, decoded at %4 s; estimate %5 Mbit/s")
                       .arg(policy)
                       .arg(c.index)
                       .arg(qs(c.level_name))
                       .arg(c.decode_end_s, 0, 'f', 3)
                       .arg(c.estimated_mbps, 0, 'f', 1));
}

void StreamPanel::setStoreSpec(const QString& spec) {
  store_spec_->setCurrentText(spec);
}

QString StreamPanel::storeSpec() const {
  return store_spec_->currentText().trimmed();
}

void StreamPanel::setRecomputeRate(double tokens_per_s) {
  recompute_rate_->setValue(tokens_per_s);
}

void StreamPanel::setDecodeRate(double tokens_per_s) {
  decode_rate_->setValue(tokens_per_s);
}

void StreamPanel::addReport(const stream::StreamReport& report) {
  stream::StreamReport r = report;
  std::shared_ptr<const kv::KVCache> assembled = std::move(r.assembled);
  r.assembled.reset();  // not kept: the quality job has its own reference
  reports_.push_back(r);
  timeline_->addRun(r);
  const int row = table_->rowCount();
  table_->insertRow(row);
  int text_chunks = 0;
  QStringList levels;
  for (const auto& c : r.chunks) {
    if (c.level == stream::kTextLevel) ++text_chunks;
    if (!levels.contains(qs(c.level_name))) levels << qs(c.level_name);
  }
  const QString status = r.status == stream::StreamStatus::Ok ? (r.slo_met ? tr("yes") : tr("no"))
                                                              : tr("failed: %1").arg(qs(r.error));
  const QStringList cells = {qs(r.policy),
                             QString::number(r.ttft_s, 'f', 3),
                             QString::number(r.context_loaded_s, 'f', 3),
                             QString::number(r.query_prefill_s, 'f', 3),
                             QString::number(r.first_token_s, 'f', 3),
                             status,
                             QString::number(double(r.bytes_sent) / 1e6, 'f', 2),
                             levels.join(QStringLiteral(", ")),
                             QString::number(text_chunks),
                             QString(),
                             QString(),
                             QString()};
  for (int i = 0; i < cells.size(); ++i) table_->setItem(row, i, new QTableWidgetItem(cells[i]));
#if KVSCOPE_GUI_HAVE_EVAL
  if (quality_ && assembled && r.status == stream::StreamStatus::Ok) {
    const QString why = quality_->unavailableReason();
    table_->item(row, Kl)->setText(why.isEmpty() ? tr("measuring...") : tr("n/a"));
    if (!why.isEmpty()) table_->item(row, Kl)->setToolTip(why);
    // Measured once the run is over: the model's forward passes would take
    // the cores from the run's encodes.
    if (why.isEmpty()) pending_quality_.push_back({assembled, qs(r.policy)});
  }
#endif
}

void StreamPanel::setQualityService(QualityService* service) {
  quality_ = service;
#if KVSCOPE_GUI_HAVE_EVAL
  connect(service, &QualityService::decodedResult, this, &StreamPanel::onQuality);
#endif
}

void StreamPanel::onQuality(const QString& policy, const eval::QualityResult& q) {
#if KVSCOPE_GUI_HAVE_EVAL
  for (int row = 0; row < table_->rowCount(); ++row) {
    if (table_->item(row, Policy)->text() != policy) continue;
    const auto& i = q.intervals;
    table_->item(row, Kl)->setText(
        QStringLiteral("%1 [%2, %3]").arg(q.kl, 0, 'g', 3).arg(i.kl.lo, 0, 'g', 2).arg(i.kl.hi, 0, 'g', 2));
    table_->item(row, Top1)->setText(QString::number(100 * q.top1_agreement, 'f', 1));
    table_->item(row, Ppl)->setText(QString::number(q.delta_ppl_pct, 'f', 2));
    table_->item(row, Kl)->setToolTip(qualitySummary(q, false));
    timeline_->setRunNote(row, tr("KL %1").arg(q.kl, 0, 'g', 2));
    emit qualityAdded(policy);
  }
#else
  Q_UNUSED(policy);
  Q_UNUSED(q);
#endif
}

}  // namespace kvscope::gui
