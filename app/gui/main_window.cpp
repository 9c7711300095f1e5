// SPDX-License-Identifier: GPL-3.0-or-later
#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGuiApplication>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScreen>
#include <QSettings>
#include <QStatusBar>
#include <QTextBrowser>
#include <QTimer>
#include <QVBoxLayout>
#include <cmath>
#include <filesystem>
#include <optional>

#include "decode_limit_setting.h"
#include "distributions_panel.h"
#include "help_panel.h"
#include "help_text.h"
#include "input_files.h"
#include "job_runner.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/version.h"
#include "kvscope/io/raw_cache.h"
#include "prefill_cache.h"
#include "session.h"
#include "workspace.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "codec_panel.h"
#include "kvscope/codec/calibration_file.h"
#include "param_editor.h"
#include "pipeline_panel.h"
#include "spectrum_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_EVAL
#include "attention_panel.h"
#include "quality_service.h"
#include "rd_panel.h"
#include "sensitivity_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_STREAM
#include "kvscope/stream/ladder.h"
#include "ladder_editor.h"
#include "stream_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_HDF5
#include "kvscope/io/hdf5_container.h"
#endif

namespace kvscope::gui {

namespace {
constexpr int kMaxRecent = 8;
constexpr int kDatasetIdRole = Qt::UserRole + 1;
// saveState() version of the dock arrangement: layouts saved by an older
// arrangement are not restored (they put docks where nothing fits).
constexpr int kLayoutVersion = 2;
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}
QString fromPath(const std::filesystem::path& p) {
  return QString::fromStdString(p.string());
}
std::filesystem::path toPath(const QString& s) {
  return std::filesystem::path(s.toStdString());
}
QString humanBytes(double bytes) {
  if (bytes >= 1024.0 * 1024.0) return QStringLiteral("%1 MB").arg(bytes / (1024.0 * 1024.0), 0, 'f', 1);
  return QStringLiteral("%1 KB").arg(bytes / 1024.0, 0, 'f', 1);
}
}  // namespace

MainWindow::MainWindow(QWidget* parent) : MainWindow(Options{}, parent) {}

MainWindow::MainWindow(const Options& options, QWidget* parent)
    : QMainWindow(parent),
      options_(options),
      session_(new Session(this)),
      model_jobs_(std::make_unique<JobRunner>(QStringLiteral("model"))),
      count_jobs_(std::make_unique<JobRunner>(QStringLiteral("tokens"))),
      restore_jobs_(std::make_unique<JobRunner>(QStringLiteral("prefill cache"))),
      export_jobs_(std::make_unique<JobRunner>(QStringLiteral("export"))) {
  setWindowTitle(QStringLiteral("KVScope"));
  setObjectName(QStringLiteral("MainWindow"));
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  // Fits 1366x768 and up; a larger screen gets up to 1600x1000 at first launch.
  setMinimumSize(1024, 640);
  if (const QScreen* screen = QGuiApplication::primaryScreen())
    resize(screen->availableSize().boundedTo(QSize(1600, 1000)));
  else
    resize(1366, 768);

  // Status bar: message, progress of the model pipeline and its Cancel.
  progress_label_ = new QLabel;
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  progress_->setMaximumWidth(240);
  cancel_button_ = new QPushButton(tr("Cancel"));
  cancel_button_->setObjectName(QStringLiteral("cancelButton"));
  cancel_button_->setToolTip(tr("Stop the running model load or prefill (Esc)"));
  statusBar()->addPermanentWidget(progress_label_);
  statusBar()->addPermanentWidget(progress_);
  statusBar()->addPermanentWidget(cancel_button_);
  progress_->hide();
  cancel_button_->hide();
  connect(cancel_button_, &QPushButton::clicked, this, &MainWindow::cancelJobs);

  connect(model_jobs_.get(), &JobRunner::started, this, [this](const QString& title) {
    progress_label_->setText(title);
    progress_->setValue(0);
    statusBar()->showMessage(title + QStringLiteral("..."));
  });
  connect(model_jobs_.get(), &JobRunner::progress, this, [this](double f, const QString& stage) {
    progress_->setValue(static_cast<int>(f * 1000));
    progress_->setToolTip(stage);
  });
  connect(model_jobs_.get(), &JobRunner::busyChanged, this, [this](bool busy) {
    progress_->setVisible(busy);
    cancel_button_->setVisible(busy);
    if (!busy) progress_label_->clear();
    if (prefill_button_) prefill_button_->setEnabled(!busy);
  });
  connect(model_jobs_.get(), &JobRunner::finished, this, [this](const QString& title, double seconds) {
    statusBar()->showMessage(tr("%1: done in %2 s").arg(title).arg(seconds, 0, 'f', 2), 10000);
  });
  connect(model_jobs_.get(), &JobRunner::cancelled, this,
          [this](const QString& title) { statusBar()->showMessage(tr("%1: cancelled").arg(title), 10000); });
  connect(model_jobs_.get(), &JobRunner::failed, this,
          [this](const QString& title, const QString& message) { showError(title, message); });
  connect(export_jobs_.get(), &JobRunner::failed, this,
          [this](const QString& title, const QString& message) { showError(title, message); });

  // Left: what you tune (codec, model and context, help), one tab each.
  // Right: what you look at, one tab per view; other views join it through
  // addView(). Tabs keep every panel at a fixed size whatever it shows, so
  // nothing overlaps and nothing moves when the codec changes.
  setDockOptions(QMainWindow::AnimatedDocks | QMainWindow::AllowTabbedDocks | QMainWindow::AllowNestedDocks);
  setTabPosition(Qt::AllDockWidgetAreas, QTabWidget::North);
  distributions_ = new DistributionsPanel(session_);
  QDockWidget* context_dock = addPanel(tr("Model and Context"), QStringLiteral("contextDock"),
                                       buildContextPanel(), Qt::LeftDockWidgetArea);
  QDockWidget* left_first = context_dock;
  QDockWidget* dist_dock = addView(tr("Distributions"), QStringLiteral("distributionsDock"), distributions_);
#if KVSCOPE_GUI_HAVE_CODECS
  codec_panel_ = new CodecPanel(session_);
  QDockWidget* codec_dock =
      addPanel(tr("Codec Tuning"), QStringLiteral("codecDock"), codec_panel_, Qt::LeftDockWidgetArea);
  tabifyDockWidget(context_dock, codec_dock);
  left_first = codec_dock;
  connect(codec_panel_, &CodecPanel::errorOccurred, this,
          [this](const QString& message) { statusBar()->showMessage(message, 10000); });
#if KVSCOPE_GUI_HAVE_EVAL
  quality_ = new QualityService(session_, this);
  codec_panel_->setQualityService(quality_);
  rd_panel_ = new RdPanel(session_, quality_, [this] { return codec_panel_->config(); });
  addView(tr("Rate–Distortion"), QStringLiteral("rdDock"), rd_panel_);
  connect(codec_panel_, &CodecPanel::configChanged, rd_panel_, &RdPanel::markCurrent);
  connect(rd_panel_, &RdPanel::loadRequested, this, [this](const codec::CodecConfig& config) {
    codec_panel_->setConfig(config);
    if (auto* dock = findChild<QDockWidget*>(QStringLiteral("codecDock"))) dock->raise();
    statusBar()->showMessage(tr("Loaded %1 settings from the rate-distortion view").arg(qs(config.codec)),
                             5000);
  });
#endif
  pipeline_panel_ = new PipelinePanel(session_, [this] { return codec_panel_->config(); });
  addView(tr("Pipeline"), QStringLiteral("pipelineDock"), pipeline_panel_);
  // The trace runs on the GUI thread: only while its tab is shown (a retune
  // must not wait for a view nobody sees); a hidden one catches up when shown.
  connect(codec_panel_, &CodecPanel::configChanged, pipeline_panel_, &PipelinePanel::requestRefresh);
  auto* spectrum = new SpectrumPanel(session_, [this] { return codec_panel_->config(); });
  addView(tr("Transform Spectrum"), QStringLiteral("spectrumDock"), spectrum);
  connect(codec_panel_, &CodecPanel::configChanged, spectrum, &SpectrumPanel::refresh);
  connect(spectrum, &SpectrumPanel::calibrated, this,
          [this](const QString& path, const QStringList& sections) {
            // The new file for the codec shown: cachegen takes its tables and its
            // channel weighting from it (a `profile` file; `auto` would take the
            // first fitting file of the folder, not necessarily this one), any other
            // codec switches to transform with the file's bases.
            if (codec_panel_->config().codec == "cachegen") {
              if (sections.contains(QString::fromLatin1(codec::calibration::kLegacyCachegenSection)))
                codec_panel_->setConfig({"cachegen", {{"profile", path.toStdString()}}});
            } else {
              codec_panel_->setConfig(
                  {"transform", {{"basis", "calibration"}, {"calibration", path.toStdString()}}});
            }
            statusBar()->showMessage(
                tr("Calibration written to %1 (%2)").arg(path, sections.join(QStringLiteral(", "))), 10000);
          });
  connect(spectrum, &SpectrumPanel::calibrationFailed, this,
          [this](const QString& message) { showError(tr("Calibrate from this context"), message); });
#if KVSCOPE_GUI_HAVE_EVAL
  {  // Why the defaults are what they are: where attention goes, which layers are sensitive.
    auto* attention = new AttentionPanel(session_, [this] { return codec_panel_->config(); });
    attention->setObjectName(QStringLiteral("attentionPanel"));
    addView(tr("Attention"), QStringLiteral("attentionDock"), attention);
    connect(codec_panel_, &CodecPanel::configChanged, attention, &AttentionPanel::redraw);
    auto* sensitivity = new SensitivityPanel(session_, [this] { return codec_panel_->config(); });
    sensitivity->setObjectName(QStringLiteral("sensitivityPanel"));
    addView(tr("Layer Sensitivity"), QStringLiteral("sensitivityDock"), sensitivity);
    connect(sensitivity, &SensitivityPanel::planned, codec_panel_,
            [this](const codec::CodecConfig& c) { codec_panel_->setConfig(c); });
  }
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  stream_panel_ = new StreamPanel(session_);
  addView(tr("Streaming"), QStringLiteral("streamDock"), stream_panel_);
  connect(stream_panel_, &StreamPanel::errorOccurred, this, &MainWindow::showError);
#if KVSCOPE_GUI_HAVE_EVAL
  stream_panel_->setQualityService(quality_);
#endif
#endif
#endif
  help_ = new HelpPanel(session_);
  QDockWidget* help_dock = addPanel(tr("Help"), QStringLiteral("helpDock"), help_, Qt::LeftDockWidgetArea);
  tabifyDockWidget(left_first, help_dock);
#if KVSCOPE_GUI_HAVE_CODECS
  connect(codec_panel_, &CodecPanel::encoded, help_, [this] {
    const auto stages = codec_panel_->lastStages();
    help_->setStages(stages);
    distributions_->setCodecStages(stages ? stages->raw_entropy.per_layer : std::vector<double>{},
                                   stages ? stages->delta_entropy.per_layer : std::vector<double>{});
  });
#endif
  // A model put off by startDefault() loads once the first cache's statistics
  // and exact encode are drawn (or the encode failed).
  auto first_views_drawn = [this] {
    if (distributions_->stats() && (!codec_panel_ || codec_panel_->lastResult())) loadDeferredModel();
  };
  connect(distributions_, &DistributionsPanel::redrawn, this, first_views_drawn);
#if KVSCOPE_GUI_HAVE_CODECS
  connect(codec_panel_, &CodecPanel::encoded, this, first_views_drawn);
  connect(codec_panel_->runner(), &JobRunner::failed, this, [this] { loadDeferredModel(); });
#endif
  connect(help_, &HelpPanel::showPanel, this, [this](const QString& name) {
    if (auto* dock = findChild<QDockWidget*>(name)) {
      dock->show();
      dock->raise();
    }
  });
#if KVSCOPE_GUI_HAVE_STREAM
  connect(stream_panel_, &StreamPanel::finished, help_, [this] {
    std::vector<StreamOutcome> outcomes;
    for (const auto& r : stream_panel_->reports())
      outcomes.push_back({qs(r.policy), r.ttft_s, r.slo_s, r.slo_met});
    help_->setStreamOutcomes(std::move(outcomes));
  });
#endif
  left_first->raise();
  dist_dock->raise();
  resizeDocks({left_first, dist_dock}, {430, 1100}, Qt::Horizontal);

  buildMenus();
  connect(session_, &Session::modelChanged, this, &MainWindow::updateModelInfo);
  // After the first prefill, not beside it: counting competes for the cores.
  connect(this, &MainWindow::prefilled, this, &MainWindow::countDatasetTokens);
  loadDatasetIndex();
  updateModelInfo();

  default_state_ = saveState(kLayoutVersion);
  if (options_.use_settings) {
    QSettings settings;
    restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
    // A layout saved by an older arrangement (other docks) is ignored.
    restoreState(settings.value(QStringLiteral("window/state")).toByteArray(), kLayoutVersion);
  }
  statusBar()->showMessage(tr("Ready"));
  if (options_.load_default) QTimer::singleShot(0, this, &MainWindow::startDefault);
}

MainWindow::~MainWindow() {
  export_jobs_.reset();
  count_jobs_.reset();
  restore_jobs_.reset();
  model_jobs_.reset();  // cancel and join before the panels go away
}

QDockWidget* MainWindow::addView(const QString& title, const QString& object_name, QWidget* widget) {
  QDockWidget* dock = addPanel(title, object_name, widget, Qt::RightDockWidgetArea);
  if (first_view_)
    tabifyDockWidget(first_view_, dock);
  else
    first_view_ = dock;
  return dock;
}

QDockWidget* MainWindow::addPanel(const QString& title, const QString& object_name, QWidget* widget,
                                  Qt::DockWidgetArea area) {
  auto* dock = new QDockWidget(title, this);
  dock->setObjectName(object_name);  // restoreState() matches docks by name
  // Title bars show '&' as is; menus (View) would read it as a mnemonic.
  dock->toggleViewAction()->setText(QString(title).replace(QLatin1Char('&'), QStringLiteral("&&")));
  dock->setWidget(widget);
  addDockWidget(area, dock);
  return dock;
}

QWidget* MainWindow::buildContextPanel() {
  auto* panel = new QWidget;
  auto* layout = new QVBoxLayout(panel);
  model_info_ = new QLabel;
  model_info_->setObjectName(QStringLiteral("modelInfo"));
  model_info_->setWordWrap(true);
  model_info_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* open_model = new QPushButton(tr("Open model..."));
  open_model->setToolTip(tr("A .gguf file or a Hugging Face folder (also: drag and drop onto the window)"));
  connect(open_model, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open model"), QString(),
                                                      tr("GGUF models (*.gguf);;All files (*)"));
    if (!path.isEmpty()) openModel(path);
  });
  layout->addWidget(new QLabel(tr("<b>Model</b>")));
  layout->addWidget(model_info_);
  layout->addWidget(open_model);

  layout->addWidget(new QLabel(tr("<b>Context</b>")));
  dataset_combo_ = new QComboBox;
  dataset_combo_->setObjectName(QStringLiteral("datasetCombo"));
  dataset_combo_->setToolTip(tr("Contexts shipped in datasets/ (pick one, or paste text below)"));
  connect(dataset_combo_, &QComboBox::activated, this, [this](int index) {
    const QString file = dataset_combo_->itemData(index).toString();
    if (!file.isEmpty()) openTextFile(file);
  });
  auto* open_text = new QPushButton(tr("Open text file..."));
  connect(open_text, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open context text"), QString(),
                                                      tr("Text (*.txt *.md);;All files (*)"));
    if (!path.isEmpty()) openTextFile(path);
  });
  auto* row = new QHBoxLayout;
  row->addWidget(dataset_combo_, 1);
  row->addWidget(open_text);
  layout->addLayout(row);
  context_edit_ = new QPlainTextEdit;
  context_edit_->setObjectName(QStringLiteral("contextEdit"));
  context_edit_->setPlaceholderText(tr("Paste or type a context here, then Prefill (F5)."));
  layout->addWidget(context_edit_, 1);
  prefill_button_ = new QPushButton(tr("Prefill"));
  prefill_button_->setObjectName(QStringLiteral("prefillButton"));
  prefill_button_->setToolTip(tr("Run the model over the context to compute its KV cache (F5)"));
  connect(prefill_button_, &QPushButton::clicked, this, [this] {
    session_->setContext(session_->contextName().isEmpty() ? tr("pasted text") : session_->contextName(),
                         context_edit_->toPlainText());
    prefill();
  });
  layout->addWidget(prefill_button_);
  token_info_ = new QLabel(tr("No KV cache yet."));
  token_info_->setObjectName(QStringLiteral("tokenInfo"));
  token_info_->setWordWrap(true);
  layout->addWidget(token_info_);
  connect(session_, &Session::cacheChanged, this, [this] {
    const auto cache = session_->cache();
    if (!cache) return;
    const kv::CacheShape& s = cache->shape();
    QString text = tr("%1: %2 tokens; KV cache %3 at fp16 (%4 layers x 2 x %5 KV heads x %6 dims)")
                       .arg(session_->cacheSource())
                       .arg(s.tokens)
                       .arg(humanBytes(double(s.fp16_bytes())))
                       .arg(s.layers)
                       .arg(s.kv_heads)
                       .arg(s.head_dim);
    if (!cache_note_.isEmpty()) text += QStringLiteral("<br><b>%1</b>").arg(cache_note_.toHtmlEscaped());
    cache_note_.clear();
    token_info_->setText(text);
  });
  return panel;
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Open Model..."), QKeySequence::Open, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open model"), QString(),
                                                      tr("GGUF models (*.gguf);;All files (*)"));
    if (!path.isEmpty()) openModel(path);
  });
  recent_menu_ = file->addMenu(tr("Open &Recent"));
  rebuildRecentMenu();
  file->addAction(tr("Open &Text..."), QKeySequence(Qt::CTRL | Qt::Key_T), this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open context text"), QString(),
                                                      tr("Text (*.txt *.md);;All files (*)"));
    if (!path.isEmpty()) openTextFile(path);
  });
  file->addAction(tr("Open &KV Cache..."), this, [this] {
    const QString path = QFileDialog::getOpenFileName(
        this, tr("Open KV cache"), QString(),
        tr("KV caches (*.safetensors *.h5 *.hdf5 *.kvc);;Raw caches (*.safetensors);;"
           "KVScope HDF5 exports (*.h5 *.hdf5);;KVScope bitstreams (*.kvc);;All files (*)"));
    if (!path.isEmpty()) openCacheFile(path);
  });
  file->addSeparator();
  file->addAction(tr("Open &Workspace..."), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O), this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open workspace"), QString(),
                                                      tr("KVScope workspace (*.kvscope)"));
    if (!path.isEmpty()) loadWorkspace(path);
  });
  file->addAction(tr("&Save Workspace..."), QKeySequence::Save, this, [this] {
    const QString path = QFileDialog::getSaveFileName(
        this, tr("Save workspace"), QStringLiteral("workspace.kvscope"), tr("KVScope workspace (*.kvscope)"));
    if (!path.isEmpty()) saveWorkspace(path);
  });
#if KVSCOPE_GUI_HAVE_HDF5
  file->addSeparator();
  file->addAction(tr("&Export Encoded Cache to HDF5..."), QKeySequence(Qt::CTRL | Qt::Key_E), this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export HDF5"), QStringLiteral("cache.h5"),
                                                      tr("HDF5 (*.h5 *.hdf5)"));
    if (!path.isEmpty()) exportHdf5(path);
  });
#endif
  file->addSeparator();
  file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);

  QMenu* run = menuBar()->addMenu(tr("&Run"));
  run->addAction(tr("&Prefill Context"), QKeySequence(Qt::Key_F5), this, [this] {
    session_->setContext(session_->contextName(), context_edit_->toPlainText());
    prefill();
  });
  run->addAction(tr("&Cancel"), QKeySequence(Qt::Key_Escape), this, &MainWindow::cancelJobs);
  run->addSeparator();
  add_decode_limit_action(run, this);

  view_menu_ = menuBar()->addMenu(tr("&View"));
  for (QDockWidget* dock : findChildren<QDockWidget*>()) view_menu_->addAction(dock->toggleViewAction());
  view_menu_->addSeparator();
  view_menu_->addAction(tr("Restore &Default Layout"), this, &MainWindow::restoreDefaultLayout);

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&How To..."), QKeySequence::HelpContents, this, [this] {
    if (auto* dock = findChild<QDockWidget*>(QStringLiteral("helpDock"))) {
      dock->show();
      dock->raise();
    }
  });
  help->addAction(tr("&About KVScope"), this, [this] {
    QMessageBox::about(this, tr("About KVScope"),
                       tr("KVScope %1\nAn explorer for KV-cache compression and streaming.")
                           .arg(QString::fromLatin1(kvscope::kVersion)));
  });
}

void MainWindow::restoreDefaultLayout() {
  restoreState(default_state_, kLayoutVersion);
  for (QDockWidget* dock : findChildren<QDockWidget*>()) dock->show();
  statusBar()->showMessage(tr("Default layout restored"), 5000);
}

void MainWindow::closeEvent(QCloseEvent* event) {
  if (options_.use_settings) {
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/state"), saveState(kLayoutVersion));
  }
  cancelJobs();
  QMainWindow::closeEvent(event);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  for (const QUrl& url : event->mimeData()->urls()) {
    if (url.isLocalFile()) {
      openPath(url.toLocalFile());
      break;  // one file at a time: each replaces the model/context
    }
  }
}

void MainWindow::openPath(const QString& path) {
  switch (classifyInput(toPath(path))) {
    case InputKind::Model:
      openModel(path);
      break;
    case InputKind::RawCache:
    case InputKind::Hdf5:
    case InputKind::Bitstream:
      openCacheFile(path);
      break;
    case InputKind::Workspace:
      loadWorkspace(path);
      break;
    case InputKind::Text:
      openTextFile(path);
      break;
  }
}

void MainWindow::showError(const QString& title, const QString& message) {
  statusBar()->showMessage(tr("%1: %2").arg(title, message), 15000);
  emit errorShown(title, message);
  // Non-blocking: open() returns at once, so neither the event loop nor a
  // test driving the window ever waits on the dialog.
  auto* box = new QMessageBox(QMessageBox::Warning, title, message, QMessageBox::Ok, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->open();
  last_error_box_ = box;
}

void MainWindow::cancelJobs() {
  model_jobs_->cancel();
#if KVSCOPE_GUI_HAVE_CODECS
  if (codec_panel_) codec_panel_->runner()->cancel();
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  if (stream_panel_) stream_panel_->stop();
#endif
}

void MainWindow::startDefault() {
  // The default context is set first so the model load goes straight on to prefill it.
  if (dataset_combo_->count() > 0 && context_edit_->toPlainText().isEmpty()) {
    const QString file = dataset_combo_->currentData().toString();
    if (!file.isEmpty()) {
      try {
        const std::string text = read_file(toPath(file));
        session_->setContext(dataset_combo_->currentText(),
                             QString::fromUtf8(text.data(), qsizetype(text.size())));
        context_edit_->setPlainText(session_->contextText());
      } catch (const Error& e) {
        showError(tr("Default context"), QString::fromUtf8(e.what()));
      }
    }
  }
  const auto model = find_default_model();
  if (!model) {
    statusBar()->showMessage(qs(missing_model_help()), 30000);
    model_info_->setText(tr("No model loaded. %1").arg(qs(missing_model_help()).toHtmlEscaped()));
    return;
  }
  // A context prefilled at an earlier launch is drawn from disk while the
  // model loads (the model is needed only for quality and recompute).
  if (options_.keep_prefills && !session_->contextText().isEmpty()) {
    const QString key = PrefillCache::key(fromPath(*model), session_->contextText());
    if (!key.isEmpty() && restoreCachedPrefill(key, session_->contextName())) {
      // The first plots need only the cache: the model (seconds of loading
      // that would take the cores from the first encode) loads after them.
      deferred_model_ = fromPath(*model);
      return;
    }
  }
  openModel(fromPath(*model));
}

void MainWindow::loadDeferredModel() {
  if (deferred_model_.isEmpty()) return;
  const QString path = deferred_model_;
  deferred_model_.clear();
  openModel(path);
}

bool MainWindow::restoreCachedPrefill(const QString& key, const QString& name) {
  if (!PrefillCache().contains(key)) return false;
  restoring_key_ = key;
  restore_jobs_->start(tr("Loading the kept prefill of %1").arg(name), [this, key, name](const ProgressFn&) {
    auto entry = PrefillCache().load(key);
    return std::function<void()>([this, entry, key, name] {
      restoring_key_.clear();
      if (!entry) {  // unreadable after all: prefill as usual
        if (session_->hasModel()) prefill();
        loadDeferredModel();  // prefills once loaded
        return;
      }
      cache_note_ = entry->note;
      session_->setCache(entry->cache, name, entry->weights);
      session_->setPrefillTokensPerSecond(entry->tokens_per_s);
      cache_key_ = key;
      statusBar()->showMessage(
          tr("%1: prefill kept from an earlier run (%2 tokens)").arg(name).arg(entry->cache->shape().tokens),
          5000);
      emit prefilled();
    });
  });
  return true;
}

void MainWindow::loadDatasetIndex() {
  // datasets/index.json: {"default_context": id, "contexts": [{"id", "title", "file", "approx_tokens"}]}.
  dataset_combo_->clear();
  const QDir dir(fromPath(dataset_dir()));
  QFile index(dir.filePath(QStringLiteral("index.json")));
  if (!index.open(QIODevice::ReadOnly)) return;
  const QJsonObject root = QJsonDocument::fromJson(index.readAll()).object();
  const QString def = root.value(QStringLiteral("default_context")).toString();
  for (const QJsonValue& v : root.value(QStringLiteral("contexts")).toArray()) {
    const QJsonObject o = v.toObject();
    const QString id = o.value(QStringLiteral("id")).toString();
    const QString file = o.value(QStringLiteral("file")).toString();
    if (file.isEmpty()) continue;
    const QString title = o.value(QStringLiteral("title")).toString();
    // Token counts depend on the model's tokenizer: countDatasetTokens() adds them.
    dataset_combo_->addItem(id, dir.filePath(file));
    dataset_combo_->setItemData(dataset_combo_->count() - 1, id, kDatasetIdRole);
    dataset_combo_->setItemData(dataset_combo_->count() - 1, title, Qt::ToolTipRole);
    if (id == def) dataset_combo_->setCurrentIndex(dataset_combo_->count() - 1);
  }
}

void MainWindow::countDatasetTokens() {
#if KVSCOPE_GUI_HAVE_MODEL
  const auto model = session_->model();
  if (!model || counted_for_ == model.get()) return;
  counted_for_ = model.get();
  QStringList files;
  for (int i = 0; i < dataset_combo_->count(); ++i) files << dataset_combo_->itemData(i).toString();
  count_jobs_->start(tr("Counting tokens"), [this, model, files](const ProgressFn& progress) {
    QList<qsizetype> counts;
    for (const QString& file : files) {
      if (!progress(double(counts.size()) / double(std::max<qsizetype>(1, files.size())), "count tokens"))
        break;
      try {
        const std::string text = read_file(toPath(file));
        counts << qsizetype(model->tokenizer().encode(text, model->tokenizer().adds_bos()).size());
      } catch (const Error&) {
        counts << -1;
      }
    }
    const int limit = model->config().context_length;
    return std::function<void()>([this, counts, limit] {
      for (int i = 0; i < counts.size() && i < dataset_combo_->count(); ++i) {
        if (counts[i] < 0) continue;
        const QString id = dataset_combo_->itemData(i, kDatasetIdRole).toString();
        dataset_combo_->setItemText(i, limit > 0 && counts[i] > limit
                                           ? tr("%1 (%2 tokens, cut to %3)").arg(id).arg(counts[i]).arg(limit)
                                           : tr("%1 (%2 tokens)").arg(id).arg(counts[i]));
      }
    });
  });
#endif
}

void MainWindow::updateModelInfo() {
#if KVSCOPE_GUI_HAVE_MODEL
  const auto model = session_->model();
  if (!model) {
    model_info_->setText(tr("No model loaded."));
    return;
  }
  const auto& c = model->config();
  // Tensor types present, the memory the weights take, and which layers
  // only attend to a sliding window of recent tokens.
  QStringList types;
  for (const auto& [type, count] : c.tensor_types) types << tr("%1 \u00d7%2").arg(qs(type)).arg(count);
  int sliding = 0;
  for (int w : c.layer_window) sliding += w > 0 ? 1 : 0;
  const QString window_text =
      sliding > 0 ? tr("<br>%1 of %2 layers use a sliding window: they attend only to the last %3 tokens")
                        .arg(sliding)
                        .arg(c.layers)
                        .arg(c.sliding_window)
                  : QString();
  const QString storage =
      c.weight_storage == "file" ? tr("kept in the file's types, dequantized per layer") : tr("float32");
  model_info_->setText(tr("%1 (%2, %3)<br>%4 layers, %5 heads, %6 KV heads, head dim %7<br>"
                          "KV cache %8 per token at fp16<br>Tensors: %10<br>Weights in memory: %11 (%12)%13"
                          "<br><small>%9</small>")
                           .arg(qs(c.name).toHtmlEscaped(), qs(c.architecture), qs(c.format))
                           .arg(c.layers)
                           .arg(c.heads)
                           .arg(c.kv_heads)
                           .arg(c.head_dim)
                           .arg(humanBytes(double(c.kv_bytes_per_token())))
                           .arg(session_->modelPath().toHtmlEscaped())
                           .arg(types.join(QStringLiteral(", ")).toHtmlEscaped())
                           .arg(humanBytes(double(c.resident_weight_bytes)))
                           .arg(storage)
                           .arg(window_text));
#else
  model_info_->setText(tr("This build has no model runtime: open a KV cache (.safetensors) instead."));
#endif
}

void MainWindow::updateTokenInfo(qsizetype tokens) {
  token_info_->setText(tr("%1 tokens; prefilling...").arg(tokens));
}

void MainWindow::openModel(const QString& path) {
#if KVSCOPE_GUI_HAVE_MODEL
  const QString name = QFileInfo(path).fileName();
  model_jobs_->start(tr("Loading %1").arg(name), [this, path](const ProgressFn& progress) {
    model::LoadOptions options;
    options.progress = progress;
    std::shared_ptr<const model::Model> model = model::Model::load(toPath(path), options);
    return std::function<void()>([this, model, path] {
      session_->setModel(model, path);
      addRecent(path);
      emit modelLoaded();
      if (!session_->contextText().isEmpty()) QTimer::singleShot(0, this, &MainWindow::prefill);
    });
  });
#else
  showError(tr("Open model"), tr("%1: this build has no model runtime (core/model)").arg(path));
#endif
}

void MainWindow::setContextText(const QString& name, const QString& text, bool run_prefill) {
  session_->setContext(name, text);
  context_edit_->setPlainText(text);
  if (run_prefill) prefill();
}

void MainWindow::openTextFile(const QString& path) {
  try {
    const QString text = readContextText(toPath(path));
    if (text.trimmed().isEmpty()) {
      showError(tr("Open text"), tr("%1: the file contains no text").arg(path));
      return;
    }
    setContextText(QFileInfo(path).fileName(), text, session_->hasModel());
  } catch (const Error& e) {
    showError(tr("Open text"), QString::fromUtf8(e.what()));
  }
}

void MainWindow::openCacheFile(const QString& path) {
  InputKind kind = classifyInput(toPath(path));
  if (kind != InputKind::Hdf5 && kind != InputKind::Bitstream) kind = InputKind::RawCache;
  model_jobs_->start(
      tr("Loading cache %1").arg(QFileInfo(path).fileName()), [this, path, kind](const ProgressFn& progress) {
        std::string description;
        auto cache =
            std::make_shared<const kv::KVCache>(loadCache(toPath(path), kind, progress, &description));
        return std::function<void()>([this, cache, path, description] {
          cache_key_.clear();
          session_->setCache(cache, QFileInfo(path).fileName());
          statusBar()->showMessage(
              tr("%1: %2, %3 tokens").arg(path, qs(description)).arg(cache->shape().tokens), 10000);
          emit prefilled();
        });
      });
}

void MainWindow::prefill() {
#if KVSCOPE_GUI_HAVE_MODEL
  const auto model = session_->model();
  const QString text = session_->contextText();
  if (!model) {
    statusBar()->showMessage(tr("Load a model first"), 5000);
    return;
  }
  if (text.trimmed().isEmpty()) {
    statusBar()->showMessage(tr("The context is empty: pick, open or paste a text"), 5000);
    return;
  }
  const QString name = session_->contextName().isEmpty() ? tr("context") : session_->contextName();
  const QString key = options_.keep_prefills ? PrefillCache::key(session_->modelPath(), text) : QString();
  if (!key.isEmpty() && (key == cache_key_ || key == restoring_key_)) return;  // shown, or on its way
  if (!key.isEmpty() && restoreCachedPrefill(key, name)) return;
  const std::string utf8 = text.toStdString();
  const int context_limit = options_.context_limit;
  model_jobs_->start(tr("Prefilling %1").arg(name), [this, model, utf8, name, key,
                                                     context_limit](const ProgressFn& progress) {
    const auto& tok = model->tokenizer();
    std::vector<std::int32_t> tokens = tok.encode(utf8, tok.adds_bos());
    const std::size_t total = tokens.size();
    const int limit = context_limit > 0 ? context_limit : model->config().context_length;
    if (limit > 0 && static_cast<int>(tokens.size()) > limit) tokens.resize(static_cast<std::size_t>(limit));
    if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "the context has no tokens");
    model::PrefillOptions options;
    options.progress = progress;
    options.want_last_logits = false;
    // Kept with the cache for "Calibrate from this context" (cachegen's
    // channel weighting): one reduction of the queries per layer and one pass
    // over the output projections, a fixed cost of tens of milliseconds,
    // below the spread of a prefill of hundreds of tokens (docs/performance.md).
    options.measure_channel_weights = true;
    auto result = model->prefill(tokens, options);
    auto cache = std::make_shared<const kv::KVCache>(std::move(result.cache));
    std::shared_ptr<const MeasuredChannelWeights> weights;
    if (result.channel_weights)
      weights = std::make_shared<const MeasuredChannelWeights>(MeasuredChannelWeights{
          std::move(result.channel_weights->key), std::move(result.channel_weights->value)});
    const QString note = total > tokens.size() ? tr("truncated to the model's context limit of %1 tokens "
                                                    "(the text has %2 tokens)")
                                                     .arg(tokens.size())
                                                     .arg(total)
                                               : QString();
    const double rate = result.seconds > 0 ? double(tokens.size()) / result.seconds : 0.0;
    return std::function<void()>([this, cache, weights, name, note, rate, key] {
      cache_note_ = note;
      session_->setCache(cache, name, weights);
      session_->setPrefillTokensPerSecond(rate);
      cache_key_ = key;
      if (!key.isEmpty()) {
        // Kept for the next launch, written on a worker (tens of MB).
        restore_jobs_->start(tr("Keeping the prefill"), [cache, weights, rate, note, key](const ProgressFn&) {
          PrefillCache().store(key, {cache, rate, note, weights});
          return std::function<void()>([] {});
        });
      }
      if (!note.isEmpty()) statusBar()->showMessage(tr("%1: %2").arg(name, note), 30000);
      emit prefilled();
    });
  });
#endif
}

void MainWindow::addRecent(const QString& path) {
  if (!options_.use_settings) return;
  QSettings settings;
  QStringList recent = settings.value(QStringLiteral("recentModels")).toStringList();
  recent.removeAll(path);
  recent.prepend(path);
  while (recent.size() > kMaxRecent) recent.removeLast();
  settings.setValue(QStringLiteral("recentModels"), recent);
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recent_menu_->clear();
  const QStringList recent = options_.use_settings
                                 ? QSettings().value(QStringLiteral("recentModels")).toStringList()
                                 : QStringList();
  for (const QString& path : recent) recent_menu_->addAction(path, this, [this, path] { openModel(path); });
  recent_menu_->setEnabled(!recent.isEmpty());
}

bool MainWindow::saveWorkspace(const QString& path) {
  Workspace w;
  w.model = session_->modelPath();
  w.context_name = session_->contextName();
  w.context_text = session_->contextText();
#if KVSCOPE_GUI_HAVE_CODECS
  if (codec_panel_) w.codec = codec_panel_->config();
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  if (stream_panel_) {
    w.profile = stream_panel_->profile();
    w.slo_s = stream_panel_->slo();
    w.chunk_tokens = stream_panel_->chunkTokens();
    w.ladder = stream_panel_->currentLadder();
  }
#endif
  const QByteArray bytes = workspaceJson(w);
  try {
    write_file_atomically(toPath(path), bytes.constData(), static_cast<std::size_t>(bytes.size()));
  } catch (const Error& e) {
    showError(tr("Save workspace"), QString::fromUtf8(e.what()));
    return false;
  }
  statusBar()->showMessage(tr("Workspace saved to %1").arg(path), 5000);
  return true;
}

bool MainWindow::loadWorkspace(const QString& path) {
  // Validate every part first: a bad part leaves the window exactly as it was.
  Workspace w;
  try {
    w = readWorkspace(path);
  } catch (const Error& e) {
    showError(tr("Open workspace"), QString::fromUtf8(e.what()));
    return false;
  }
  applyWorkspace(w, path);
  statusBar()->showMessage(tr("Workspace %1 restored").arg(path), 5000);
  return true;
}

void MainWindow::applyWorkspace(const Workspace& w, const QString& path) {
#if KVSCOPE_GUI_HAVE_CODECS
  if (codec_panel_ && w.codec) codec_panel_->setConfig(*w.codec);
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  if (stream_panel_)
    stream_panel_->applyWorkspace(w, [this, path](const QString& message) {
      showError(tr("Open workspace"), tr("%1: %2").arg(path, message));
    });
#endif
  const bool new_model = !w.model.isEmpty() && w.model != session_->modelPath();
  if (w.context_text && !w.context_text->isEmpty())
    setContextText(w.context_name.value_or(QString()), *w.context_text, !new_model);
  if (new_model) openModel(w.model);  // prefills the restored context once loaded
}

#if KVSCOPE_GUI_HAVE_HDF5
void MainWindow::exportHdf5(const QString& path) {
  const auto result = codec_panel_ ? codec_panel_->lastResult() : nullptr;
  const auto cache = session_->cache();
  if (!result || !cache) {
    showError(tr("Export HDF5"),
              tr("%1: nothing to export yet: prefill a context so it gets encoded").arg(path));
    return;
  }
  const codec::CodecConfig config = codec_panel_->lastResultConfig();
#if KVSCOPE_GUI_HAVE_MODEL
  // The model the cache came from, when it is the loaded one: its file hash identifies it in the export.
  std::shared_ptr<const model::Model> model = session_->model();
  if (model && model->config().name != cache->info.model_name) model.reset();
#endif
  export_jobs_->start(tr("Exporting %1").arg(QFileInfo(path).fileName()),
                      [=, this](const ProgressFn& progress) {
                        // The header-derived contents validate the bitstream; the
                        // cache adds what the header may omit (token ids, model).
                        io::Hdf5Contents contents =
                            io::hdf5_contents_from_bitstream(result->bytes, config.codec + " (KVScope GUI)");
                        contents.levels.at(0).config = config;
                        contents.info = cache->info;
#if KVSCOPE_GUI_HAVE_MODEL
                        // Prefill leaves the hash empty (hashing the file costs a read of it):
                        // computed once here, so exports always name their model exactly.
                        if (contents.info.model_sha256.empty() && model)
                          contents.info.model_sha256 = model->file_sha256();
#endif
                        io::Hdf5ExportOptions options;
                        options.overwrite = true;  // the save dialog already asked
                        options.progress = progress;
                        io::export_hdf5(toPath(path), contents, options);
                        return std::function<void()>([this, path] {
                          statusBar()->showMessage(tr("Exported %1").arg(path), 10000);
                          emit exported(path);
                        });
                      });
}
#endif

}  // namespace kvscope::gui
