#include "stream_panel.h"

#include <QCheckBox>
#include <QComboBox>
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
#include "kvscope/stream/ladder.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/model_recomputer.h"
#include "ladder_editor.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}
std::filesystem::path toPath(const QString& s) {
  return std::filesystem::path(s.toStdString());
}
/// The query asked after the context: its prefill and first token are part of TTFT.
constexpr const char* kQuery = "\n\nQuestion: What is the text above about?\nAnswer:";
}  // namespace

StreamPanel::StreamPanel(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), runner_(std::make_unique<JobRunner>(QStringLiteral("stream"))) {
  preset_ = new QComboBox;
  preset_->setObjectName(QStringLiteral("profilePreset"));
  for (const std::string& name : stream::preset_profile_names()) preset_->addItem(qs(name));
  auto* import_csv = new QPushButton(tr("Import..."));
  auto* export_csv = new QPushButton(tr("Export..."));
  slo_ = new QDoubleSpinBox;
  slo_->setRange(kMinSlo, kMaxSlo);
  slo_->setDecimals(2);
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
      tr("Real transport: profile seconds per wall second (transfers sped up, decode real)."));
  simulate_ = new QCheckBox(tr("simulated clock"));
  simulate_->setToolTip(
      tr("Off: chunks go over a real TCP connection on 127.0.0.1 paced by the profile. "
         "On: the same policy and decoder on a simulated clock (instant)."));
  baselines_ = new QCheckBox(tr("also run fp16, int8, text baselines"));
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
  recompute_rate_ = new QDoubleSpinBox;
  recompute_rate_->setObjectName(QStringLiteral("recomputeRate"));
  recompute_rate_->setRange(0, 1e7);
  recompute_rate_->setDecimals(0);
  recompute_rate_->setSingleStep(100);
  recompute_rate_->setSuffix(tr(" tokens/s"));
  recompute_rate_->setSpecialValueText(tr("measured"));
  recompute_rate_->setToolTip(
      tr("Recompute rate: what text chunks and the query's prefill are charged. \"measured\": the model's "
         "prefill speed on this machine, measured at each Run; or set a rate (a faster receiver)."));
  run_ = new QPushButton(tr("Run stream"));
  run_->setObjectName(QStringLiteral("runStreamButton"));
  stop_ = new QPushButton(tr("Stop"));
  stop_->setEnabled(false);
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  status_ = new QLabel(tr("Prefill a context, pick a profile and Run."));
  status_->setWordWrap(true);

  profile_plot_ = new PlotWidget;
  profile_plot_->setObjectName(QStringLiteral("profilePlot"));
  profile_plot_->xAxis->setLabel(tr("time (s)"));
  profile_plot_->yAxis->setLabel(tr("Mbit/s"));
  profile_graph_ = profile_plot_->addGraph();
  profile_graph_->setName(tr("bandwidth"));
  profile_graph_->setLineStyle(QCPGraph::lsStepLeft);
  profile_plot_->setToolTip(tr("Drag a point up or down to change the rate from that time on."));
  profile_plot_->installEventFilter(this);
  // Rates start at 0 Mbit/s: fitting to the data hid the lowest step on the
  // bottom edge (wifi-drop's 15 Mbit/s looked like an outage).
  profile_plot_->setHomeView([this] {
    profile_plot_->yAxis->setRange(0, std::max(1.0, profile_plot_->yAxis->range().upper * 1.1));
  });

  timeline_ = new PlotWidget;
  timeline_->setObjectName(QStringLiteral("timelinePlot"));
  timeline_->xAxis->setLabel(tr("time (s)"));
  // Short axis titles: the timeline is low, and a longer title is cut off.
  timeline_->yAxis->setLabel(tr("level"));  // one lane per level, finest at 0; text on top
  timeline_->yAxis->setTicker(QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText));
  timeline_->yAxis2->setVisible(true);
  timeline_->yAxis2->setLabel(tr("tokens, Mbit/s"));
  decoded_graph_ = timeline_->addGraph(timeline_->xAxis, timeline_->yAxis2);
  decoded_graph_->setName(tr("tokens decoded"));
  decoded_graph_->setLineStyle(QCPGraph::lsStepLeft);
  bandwidth_graph_ = timeline_->addGraph(timeline_->xAxis, timeline_->yAxis2);
  bandwidth_graph_->setName(tr("bandwidth (Mbit/s)"));
  bandwidth_graph_->setLineStyle(QCPGraph::lsStepLeft);
  slo_line_ = new QCPItemStraightLine(timeline_);
  // Every lane (levels 0..7, text at 8) in the home view: the bars are items.
  timeline_->setHomeView([this] { timeline_->yAxis->setRange(-0.6, text_lane_ + 0.6); });
  timeline_->legend->setVisible(true);
  auto recolour = [this] {
    profile_graph_->setPen(QPen(profile_plot_->seriesColor(0), 2));
    profile_graph_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 7));
    decoded_graph_->setPen(QPen(timeline_->seriesColor(2), 2));
    bandwidth_graph_->setPen(QPen(timeline_->seriesColor(0), 1, Qt::DashLine));
    slo_line_->setPen(QPen(timeline_->seriesColor(1), 2, Qt::DashDotLine));
    profile_plot_->replot(QCustomPlot::rpQueuedReplot);
    timeline_->replot(QCustomPlot::rpQueuedReplot);
  };
  connect(timeline_, &PlotWidget::paletteApplied, this, recolour);

  comparison_ = new PlotWidget;
  comparison_->setObjectName(QStringLiteral("comparisonPlot"));
  comparison_->setMinimumHeight(140);
  comparison_->xAxis->setLabel(tr("time (s): each finished run, same clock; | = loaded, dashed = SLO"));
  comparison_->yAxis->setLabel(tr("policy"));
  comparison_->yAxis->setRangeReversed(true);  // adaptive on top
  comparison_->yAxis->setTicker(QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText));
  comparison_->setToolTip(
      tr("The adaptive run and the fixed baselines side by side: bars are chunks from send "
         "start to arrival, coloured and labelled by level."));
  comparison_slo_ = new QCPItemStraightLine(comparison_);
  // Rescaling ignores items (the chunk bars): the home view shows every lane,
  // the longest run and the SLO; double-click returns to it.
  comparison_->setHomeView([this] {
    double x_max = slo_->value();
    for (const auto& r : reports_) x_max = std::max({x_max, r.ttft_s, r.slo_s});
    comparison_->xAxis->setRange(0, x_max * 1.3 + 1e-3);
    comparison_->yAxis->setRange(-0.6, std::max<double>(0, double(reports_.size()) - 1) + 0.6);
  });
  connect(comparison_, &PlotWidget::paletteApplied, this, [this] {
    comparison_slo_->setPen(QPen(comparison_->seriesColor(1), 2, Qt::DashDotLine));
    comparison_->replot(QCustomPlot::rpQueuedReplot);
  });
  comparison_slo_->setPen(QPen(comparison_->seriesColor(1), 2, Qt::DashDotLine));
  recolour();

  table_ = new QTableWidget(0, 10);
  table_->setObjectName(QStringLiteral("streamTable"));
  // TTFT and its parts: context loaded + the query's prefill + the first token.
  table_->setHorizontalHeaderLabels({tr("policy"), tr("mode"), tr("TTFT (s)"), tr("loaded (s)"),
                                     tr("query (s)"), tr("first token (s)"), tr("SLO met"), tr("MB sent"),
                                     tr("chunks as text"), tr("levels used")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);

  auto* form = new QFormLayout;
  auto* profile_row = new QHBoxLayout;
  profile_row->addWidget(preset_, 1);
  profile_row->addWidget(import_csv);
  profile_row->addWidget(export_csv);
  form->addRow(tr("Profile"), profile_row);
  auto* slo_row = new QHBoxLayout;
  slo_row->addWidget(slo_);
  slo_row->addWidget(new QLabel(tr("chunk")));
  slo_row->addWidget(chunk_tokens_);
  slo_row->addWidget(new QLabel(tr("ladder")));
  slo_row->addWidget(ladder_combo_, 1);
  slo_row->addWidget(edit_ladder);
  form->addRow(tr("SLO"), slo_row);
  auto* run_row = new QHBoxLayout;
  run_row->addWidget(simulate_);
  run_row->addWidget(new QLabel(tr("speed")));
  run_row->addWidget(time_scale_);
  run_row->addWidget(baselines_);
  form->addRow(tr("Run"), run_row);
  auto* store_row = new QHBoxLayout;
  store_row->addWidget(store_spec_, 1);
  store_row->addWidget(new QLabel(tr("recompute")));
  store_row->addWidget(recompute_rate_);
  form->addRow(tr("Store"), store_row);
  auto* buttons = new QHBoxLayout;
  buttons->addWidget(run_);
  buttons->addWidget(stop_);
  buttons->addWidget(progress_, 1);
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->addWidget(profile_plot_);
  splitter->addWidget(timeline_);
  splitter->addWidget(comparison_);
  splitter->addWidget(table_);
  splitter->setStretchFactor(1, 2);
  splitter->setStretchFactor(2, 1);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(form);
  layout->addLayout(buttons);
  layout->addWidget(status_);
  layout->addWidget(splitter, 1);

  connect(preset_, &QComboBox::currentIndexChanged, this, [this] {
    try {
      setProfile(stream::resolve_profile(preset_->currentText().toStdString()));
    } catch (const Error& e) {
      emit errorOccurred(tr("Bandwidth profile"), QString::fromUtf8(e.what()));
    }
  });
  connect(import_csv, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Import bandwidth profile"), QString(),
                                                      tr("Profiles (*.csv *.json)"));
    QString error;
    if (!path.isEmpty() && !loadProfileFile(path, &error)) emit errorOccurred(tr("Import profile"), error);
  });
  connect(export_csv, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(
        this, tr("Export bandwidth profile"), QStringLiteral("profile.csv"), tr("Profiles (*.csv *.json)"));
    if (path.isEmpty()) return;
    try {
      stream::save_profile(profile_, toPath(path));
    } catch (const Error& e) {
      emit errorOccurred(tr("Export profile"), QString::fromUtf8(e.what()));
    }
  });
  connect(slo_, &QDoubleSpinBox::valueChanged, this, [this](double s) {
    slo_line_->point1->setCoords(s, 0);
    slo_line_->point2->setCoords(s, 1);
    comparison_slo_->point1->setCoords(s, 0);
    comparison_slo_->point2->setCoords(s, 1);
    comparison_->replot(QCustomPlot::rpQueuedReplot);
    timeline_->replot(QCustomPlot::rpQueuedReplot);
  });
  connect(ladder_combo_, &QComboBox::currentIndexChanged, this, [this](int index) {
    QString error;
    if (!loadLadderItem(index, &error)) emit errorOccurred(tr("Ladder"), error);
  });
  connect(edit_ladder, &QPushButton::clicked, this, &StreamPanel::editLadder);
  connect(chunk_tokens_, &QSpinBox::valueChanged, this, [this] { store_.reset(); });
  connect(session_, &Session::cacheChanged, this, [this] { store_.reset(); });
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
  connect(runner_.get(), &JobRunner::failed, this,
          [this](const QString& title, const QString& message) { emit errorOccurred(title, message); });
  connect(runner_.get(), &JobRunner::cancelled, this, [this] { status_->setText(tr("Stopped.")); });

  const int def = preset_->findText(QStringLiteral("wifi-drop"));
  if (def >= 0) preset_->setCurrentIndex(def);
  if (preset_->count() > 0 && profile_graph_->dataCount() == 0) {
    try {
      setProfile(stream::resolve_profile(preset_->currentText().toStdString()));
    } catch (const Error&) {
    }
  }
  slo_->valueChanged(slo_->value());
  const int default_ladder = ladder_combo_->findText(QStringLiteral("default"));
  if (default_ladder >= 0) ladder_combo_->setCurrentIndex(default_ladder);
  QString error;
  if (ladder_combo_->count() > 0 && ladder_.levels.empty() &&
      !loadLadderItem(ladder_combo_->currentIndex(), &error))
    status_->setText(error);
}

StreamPanel::~StreamPanel() {
  runner_.reset();
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
void StreamPanel::setRunBaselines(bool on) {
  baselines_->setChecked(on);
}

void StreamPanel::setProfile(const stream::BandwidthProfile& profile) {
  profile_ = profile;
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
  QVector<double> x, y;
  if (profile_.kind() == stream::BandwidthProfile::Kind::PerChunkRandom) {
    profile_plot_->yAxis->setLabel(
        tr("Mbit/s (per chunk, uniform %1-%2)").arg(profile_.min_mbps()).arg(profile_.max_mbps()));
    for (int c = 0; c < 16; ++c) x << c, y << profile_.mbps_at(0, c);
    profile_plot_->xAxis->setLabel(tr("chunk"));
  } else {
    profile_plot_->xAxis->setLabel(tr("time (s)"));
    profile_plot_->yAxis->setLabel(tr("Mbit/s"));
    for (const auto& p : profile_.points()) x << p.time_s, y << p.mbps;
    // Show the last rate holding on for a while.
    if (!x.isEmpty()) x << x.back() + std::max(1.0, 0.2 * profile_.span_s()), y << y.back();
  }
  profile_graph_->setData(x, y, true);
  profile_plot_->refresh();
  status_->setText(qs(profile_.name()) + QStringLiteral(": ") + qs(profile_.description()));
}

bool StreamPanel::eventFilter(QObject* watched, QEvent* event) {
  // Drag a profile point vertically: a new piecewise profile with that rate.
  if (watched != profile_plot_ || profile_.kind() != stream::BandwidthProfile::Kind::Piecewise)
    return QWidget::eventFilter(watched, event);
  auto* mouse = dynamic_cast<QMouseEvent*>(event);
  if (!mouse) return QWidget::eventFilter(watched, event);
  const QPointF pos = mouse->position();
  if (event->type() == QEvent::MouseButtonPress && mouse->button() == Qt::LeftButton) {
    const auto& points = profile_.points();
    for (int i = 0; i < static_cast<int>(points.size()); ++i) {
      const double px = profile_plot_->xAxis->coordToPixel(points[std::size_t(i)].time_s);
      const double py = profile_plot_->yAxis->coordToPixel(points[std::size_t(i)].mbps);
      if (std::hypot(px - pos.x(), py - pos.y()) < 8) {
        drag_index_ = i;
        return true;  // not a pan
      }
    }
  } else if (event->type() == QEvent::MouseMove && drag_index_ >= 0) {
    auto points = profile_.points();
    points[std::size_t(drag_index_)].mbps = std::max(0.01, profile_plot_->yAxis->pixelToCoord(pos.y()));
    try {
      auto edited = stream::BandwidthProfile::piecewise(points);
      edited.set_name(profile_.name() + (profile_.name().ends_with(" (edited)") ? "" : " (edited)"));
      edited.set_description(profile_.description());
      profile_ = edited;
      QVector<double> x, y;
      for (const auto& p : profile_.points()) x << p.time_s, y << p.mbps;
      x << x.back() + std::max(1.0, 0.2 * profile_.span_s()), y << y.back();
      profile_graph_->setData(x, y, true);
      profile_plot_->replot(QCustomPlot::rpQueuedReplot);
    } catch (const Error&) {
    }
    return true;
  } else if (event->type() == QEvent::MouseButtonRelease && drag_index_ >= 0) {
    drag_index_ = -1;
    redrawProfile();
    return true;
  }
  return QWidget::eventFilter(watched, event);
}

void StreamPanel::clearTimeline() {
  for (int i = timeline_->itemCount() - 1; i >= 0; --i)
    if (timeline_->item(i) != slo_line_) timeline_->removeItem(i);
  decoded_graph_->data()->clear();
  bandwidth_graph_->data()->clear();
  decoded_tokens_ = 0;
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
  const stream::Ladder ladder = ladder_;
  std::vector<std::pair<QString, stream::Policy>> policies;
  policies.emplace_back(QStringLiteral("adaptive"), stream::parse_policy("adaptive", ladder));
  if (baselines_->isChecked())
    for (const char* name : {"fp16", "int8", "text"})
      policies.emplace_back(QString::fromLatin1(name), stream::parse_policy(name, ladder));
  if (!store_ || store_->shared_cache() != cache)
    store_ = std::make_shared<stream::EncodedContext>(cache, chunk_tokens_->value());
  auto store = store_;
  stream::StreamConfig config;
  config.slo_s = slo_->value();
  config.simulate = simulate_->isChecked();
  config.time_scale = time_scale_->value();
  config.keep_assembled_cache = false;
  const stream::BandwidthProfile profile = profile_;
  const std::string store_spec = store_spec_->currentText().trimmed().toStdString();
  const double edited_rate = recompute_rate_->value();
  auto rate_cache = rate_cache_;
#if KVSCOPE_GUI_HAVE_MODEL
  // The model must outlive the recomputer and the query: the job keeps its shared_ptr.
  auto model_keepalive = session_->model();
  if (!model_keepalive || cache->info.token_ids.empty()) model_keepalive.reset();
#endif
  reports_.clear();
  table_->setRowCount(0);
  // One lane per ladder level, named, finest at the bottom; text above them.
  text_lane_ = int(ladder.levels.size());
  if (auto names = timeline_->yAxis->ticker().dynamicCast<QCPAxisTickerText>()) {
    names->clear();
    for (int i = 0; i < text_lane_; ++i) names->addTick(i, qs(ladder.levels[std::size_t(i)].name));
    names->addTick(text_lane_, tr("text"));
  }
  clearTimeline();
  clearComparison();
  timeline_->resetView();
  const quint64 gen = runner_->generation() + 1;  // the job about to start
  runner_->start(tr("Streaming"), [=, this](const ProgressFn& progress) {
    // The receiver's compute (docs/streaming.md, "Delay model"): text chunks
    // recomputed over the decoded prefix and the query, charged at the
    // recompute rate measured here (or the one set).
    std::optional<stream::Recomputer> recompute;
    std::optional<stream::QueryCost> query;
#if KVSCOPE_GUI_HAVE_MODEL
    if (model_keepalive && cache->info.token_ids.size() >= 16) {
      stream::RecomputeRate rate;
      {
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
      recompute = stream::model_recomputer(*model_keepalive, rate);
      const auto ids = model_keepalive->tokenizer().encode(kQuery, false);
      if (!ids.empty()) {
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
    std::vector<stream::StreamReport> reports;
    for (const auto& [name, policy] : policies) {
      if (policy.kind == stream::Policy::Kind::Text && !recompute) continue;
      stream::PrepareOptions prep;
      prep.progress = [&](double f, std::string_view) {
        return progress(f, "encoding chunks for " + name.toStdString());
      };
      stream::prepare_stream(*store, policy, prep);
      // Live view: events are queued to the GUI thread (dropped if a newer run started).
      QMetaObject::invokeMethod(
          this,
          [this, gen, name] {
            if (gen == runner_->generation()) {
              clearTimeline();
              live_policy_ = name;
            }
          },
          Qt::QueuedConnection);
      stream::StreamHooks hooks;
      hooks.recompute = recompute;
      hooks.progress = [&](double f, std::string_view) {
        return progress(f, "streaming " + name.toStdString());
      };
      hooks.on_event = [this, gen, name](const stream::StreamEvent& e) {
        QMetaObject::invokeMethod(
            this,
            [this, gen, e, name] {
              if (gen == runner_->generation()) onEvent(e, name);
            },
            Qt::QueuedConnection);
      };
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
      reports.push_back(std::move(report));
    }
    return std::function<void()>([this] {
      status_->setText(tr("Done: %1 run(s).").arg(reports_.size()));
      emit finished();
    });
  });
}

void StreamPanel::stop() {
  runner_->cancel();
}

void StreamPanel::onEvent(const stream::StreamEvent& e, const QString& policy) {
  const stream::ChunkRecord& c = e.chunk;
  using T = stream::StreamEvent::Type;
  if (e.type == T::Arrival || e.type == T::DecodeEnd) {
    // One bar per chunk in the lane of its level, from send start to arrival.
    if (e.type == T::Arrival) {
      const double lane = c.level == stream::kTextLevel ? text_lane_ : c.level;
      auto* rect = new QCPItemRect(timeline_);
      rect->topLeft->setCoords(c.send_start_s, lane + 0.4);
      rect->bottomRight->setCoords(c.arrival_s, lane - 0.4);
      const QColor colour = c.level == stream::kTextLevel ? timeline_->seriesColor(1)
                                                          : timeline_->seriesColor(3 + std::max(0, c.level));
      rect->setBrush(colour);
      rect->setPen(QPen(colour.darker(130)));
      auto* label = new QCPItemText(timeline_);
      // From the bar's start: a short bar (a text chunk at 0 s) keeps its label whole.
      label->setPositionAlignment(Qt::AlignLeft | Qt::AlignVCenter);
      label->position->setCoords(c.send_start_s, lane);
      label->setPadding(QMargins(3, 0, 0, 0));
      label->setText(qs(c.level_name));
      label->setColor(timeline_->palette().color(QPalette::Text));
      const double end = c.arrival_s;
      bandwidth_graph_->addData(c.send_start_s, profile_.mbps_at(c.send_start_s, c.index));
      bandwidth_graph_->addData(end, profile_.mbps_at(end, c.index));
    } else {
      decoded_tokens_ += c.end - c.begin;
      decoded_graph_->addData(c.decode_end_s, decoded_tokens_);
    }
    timeline_->refresh();
  }
  status_->setText(tr("%1: chunk %2 (%3) %4 at %5 s, estimate %6 Mbit/s")
                       .arg(policy)
                       .arg(c.index)
                       .arg(qs(c.level_name))
                       .arg(QString::fromLatin1(stream::to_string(e.type)))
                       .arg(std::max({c.send_start_s, c.arrival_s, c.decode_end_s}), 0, 'f', 3)
                       .arg(c.estimated_mbps, 0, 'f', 1));
}

void StreamPanel::clearComparison() {
  for (int i = comparison_->itemCount() - 1; i >= 0; --i)
    if (comparison_->item(i) != comparison_slo_) comparison_->removeItem(i);
  static_cast<QCPAxisTickerText*>(comparison_->yAxis->ticker().data())->clear();
  comparison_->resetView();
  comparison_->replot(QCustomPlot::rpQueuedReplot);
}

void StreamPanel::drawComparisonLane(const stream::StreamReport& r, int lane) {
  auto ticker = comparison_->yAxis->ticker().staticCast<QCPAxisTickerText>();
  ticker->addTick(lane, qs(r.policy));
  const QColor text_colour = comparison_->palette().color(QPalette::Text);
  double end = 0;
  for (const auto& c : r.chunks) {
    if (c.send_start_s < 0 || c.arrival_s < 0) continue;  // never sent (stopped or failed)
    auto* rect = new QCPItemRect(comparison_);
    rect->topLeft->setCoords(c.send_start_s, lane - 0.35);
    rect->bottomRight->setCoords(c.arrival_s, lane + 0.35);
    const QColor colour = c.level == stream::kTextLevel ? comparison_->seriesColor(1)
                                                        : comparison_->seriesColor(3 + std::max(0, c.level));
    rect->setBrush(colour);
    rect->setPen(QPen(colour.darker(130)));
    rect->setClipToAxisRect(true);
    auto* label = new QCPItemText(comparison_);
    // From the bar's start: a short bar (a text chunk at 0 s) keeps its label whole.
    label->setPositionAlignment(Qt::AlignLeft | Qt::AlignVCenter);
    label->position->setCoords(c.send_start_s, lane);
    label->setPadding(QMargins(3, 0, 0, 0));
    label->setText(qs(c.level_name));
    label->setColor(text_colour);
    end = std::max({end, c.arrival_s, c.decode_end_s});
  }
  // Time to load: a tick at the end of the lane and its value, green or red against the SLO.
  const double ttft = r.status == stream::StreamStatus::Ok ? r.ttft_s : end;
  auto* mark = new QCPItemLine(comparison_);
  mark->start->setCoords(ttft, lane - 0.45);
  mark->end->setCoords(ttft, lane + 0.45);
  const QColor verdict = r.slo_met ? QColor(40, 160, 60) : QColor(210, 50, 40);
  mark->setPen(QPen(verdict, 3));
  auto* ttft_label = new QCPItemText(comparison_);
  // In a column at the right edge (the home view leaves it free of bars), so
  // it never covers the last chunk's label.
  ttft_label->setPositionAlignment(Qt::AlignRight | Qt::AlignVCenter);
  ttft_label->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
  ttft_label->position->setCoords(1.0, lane);
  ttft_label->setPadding(QMargins(0, 0, 6, 0));
  ttft_label->setBrush(comparison_->palette().color(QPalette::Base));
  ttft_label->setText(
      r.status == stream::StreamStatus::Ok
          ? tr(" %1 s %2").arg(r.ttft_s, 0, 'f', 2).arg(r.slo_met ? tr("(SLO met)") : tr("(SLO missed)"))
          : tr(" failed"));
  ttft_label->setColor(verdict);
  comparison_->refresh();  // the home view below, unless the user zoomed
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

void StreamPanel::addReport(const stream::StreamReport& r) {
  reports_.push_back(r);
  drawComparisonLane(r, int(reports_.size()) - 1);
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
                             qs(r.mode),
                             QString::number(r.ttft_s, 'f', 3),
                             QString::number(r.context_loaded_s, 'f', 3),
                             QString::number(r.query_prefill_s, 'f', 3),
                             QString::number(r.first_token_s, 'f', 3),
                             status,
                             QString::number(double(r.bytes_sent) / 1e6, 'f', 2),
                             QString::number(text_chunks),
                             levels.join(QStringLiteral(", "))};
  for (int i = 0; i < cells.size(); ++i) table_->setItem(row, i, new QTableWidgetItem(cells[i]));
}

}  // namespace kvscope::gui
