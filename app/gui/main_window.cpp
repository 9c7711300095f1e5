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
#include "help_text.h"
#include "job_runner.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/version.h"
#include "kvscope/io/raw_cache.h"
#include "session.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "codec_panel.h"
#include "param_editor.h"
#include "pipeline_panel.h"
#include "spectrum_panel.h"
#endif
#if KVSCOPE_GUI_HAVE_EVAL
#include "attention_panel.h"
#include "quality_panel.h"
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
      export_jobs_(std::make_unique<JobRunner>(QStringLiteral("export"))) {
  setWindowTitle(QStringLiteral("KVScope"));
  setObjectName(QStringLiteral("MainWindow"));
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  resize(1400, 900);

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

  distributions_ = new DistributionsPanel(session_);
  addPanel(tr("Model & Context"), QStringLiteral("contextDock"), buildContextPanel(), Qt::LeftDockWidgetArea);
  QDockWidget* dist_dock = addPanel(tr("Distributions"), QStringLiteral("distributionsDock"), distributions_,
                                    Qt::RightDockWidgetArea);
#if KVSCOPE_GUI_HAVE_CODECS
  codec_panel_ = new CodecPanel(session_);
  QDockWidget* codec_dock =
      addPanel(tr("Codec Tuning"), QStringLiteral("codecDock"), codec_panel_, Qt::RightDockWidgetArea);
  splitDockWidget(dist_dock, codec_dock, Qt::Horizontal);
  connect(codec_panel_, &CodecPanel::errorOccurred, this,
          [this](const QString& message) { statusBar()->showMessage(message, 10000); });
  pipeline_panel_ = new PipelinePanel(session_, [this] { return codec_panel_->config(); });
  QDockWidget* pipeline_dock =
      addPanel(tr("Pipeline"), QStringLiteral("pipelineDock"), pipeline_panel_, Qt::RightDockWidgetArea);
  tabifyDockWidget(dist_dock, pipeline_dock);
  dist_dock->raise();
  connect(codec_panel_, &CodecPanel::configChanged, pipeline_panel_, &PipelinePanel::refresh);
  auto* spectrum = new SpectrumPanel(session_, [this] { return codec_panel_->config(); });
  tabifyDockWidget(dist_dock, addPanel(tr("Transform Spectrum"), QStringLiteral("spectrumDock"), spectrum,
                                       Qt::RightDockWidgetArea));
  dist_dock->raise();
  connect(codec_panel_, &CodecPanel::configChanged, spectrum, &SpectrumPanel::refresh);
  connect(spectrum, &SpectrumPanel::calibrated, this, [this](const QString& path) {
    codec_panel_->setConfig({"transform", {{"basis", "calibration"}, {"calibration", path.toStdString()}}});
    statusBar()->showMessage(tr("Transform calibration written to %1").arg(path), 10000);
  });
#if KVSCOPE_GUI_HAVE_EVAL
  quality_panel_ = new QualityPanel(session_, [this] { return codec_panel_->config(); });
  QDockWidget* quality_dock =
      addPanel(tr("Quality"), QStringLiteral("qualityDock"), quality_panel_, Qt::BottomDockWidgetArea);
  connect(codec_panel_, &CodecPanel::configChanged, quality_panel_, &QualityPanel::markCurrent);
  {  // Why the defaults are what they are: where attention goes, which layers are sensitive.
    auto* attention = new AttentionPanel(session_, [this] { return codec_panel_->config(); });
    attention->setObjectName(QStringLiteral("attentionPanel"));
    tabifyDockWidget(quality_dock, addPanel(tr("Attention"), QStringLiteral("attentionDock"), attention,
                                            Qt::BottomDockWidgetArea));
    connect(codec_panel_, &CodecPanel::configChanged, attention, &AttentionPanel::redraw);
    auto* sensitivity = new SensitivityPanel(session_, [this] { return codec_panel_->config(); });
    sensitivity->setObjectName(QStringLiteral("sensitivityPanel"));
    tabifyDockWidget(quality_dock, addPanel(tr("Layer Sensitivity"), QStringLiteral("sensitivityDock"),
                                            sensitivity, Qt::BottomDockWidgetArea));
    connect(sensitivity, &SensitivityPanel::planned, codec_panel_,
            [this](const codec::CodecConfig& c) { codec_panel_->setConfig(c); });
  }
#if KVSCOPE_GUI_HAVE_STREAM
  stream_panel_ = new StreamPanel(session_);
  QDockWidget* stream_dock = addPanel(tr("Bandwidth & Streaming"), QStringLiteral("streamDock"),
                                      stream_panel_, Qt::BottomDockWidgetArea);
  tabifyDockWidget(quality_dock, stream_dock);
  stream_dock->raise();
  connect(stream_panel_, &StreamPanel::errorOccurred, this, &MainWindow::showError);
#endif
  Q_UNUSED(quality_dock);
#endif
#else
  Q_UNUSED(dist_dock);
#endif
  auto* help = new QTextBrowser;
  help->setHtml(help::html());
  QDockWidget* help_dock = addPanel(tr("Help"), QStringLiteral("helpDock"), help, Qt::LeftDockWidgetArea);
  help_dock->hide();

  buildMenus();
  connect(session_, &Session::modelChanged, this, &MainWindow::updateModelInfo);
  loadDatasetIndex();
  updateModelInfo();

  default_state_ = saveState();
  if (options_.use_settings) {
    QSettings settings;
    restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
    restoreState(settings.value(QStringLiteral("window/state")).toByteArray());
  }
  statusBar()->showMessage(tr("Ready"));
  if (options_.load_default) QTimer::singleShot(0, this, &MainWindow::startDefault);
}

MainWindow::~MainWindow() {
  export_jobs_.reset();
  model_jobs_.reset();  // cancel and join before the panels go away
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
    token_info_->setText(tr("%1: %2 tokens; KV cache %3 at fp16 (%4 layers x 2 x %5 KV heads x %6 dims)")
                             .arg(session_->cacheSource())
                             .arg(s.tokens)
                             .arg(humanBytes(double(s.fp16_bytes())))
                             .arg(s.layers)
                             .arg(s.kv_heads)
                             .arg(s.head_dim));
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
  file->addAction(tr("Open &KV Cache (safetensors)..."), this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open KV cache"), QString(),
                                                      tr("safetensors (*.safetensors);;All files (*)"));
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
  help->addAction(tr("&Concepts"), QKeySequence::HelpContents, this, [this] {
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
  restoreState(default_state_);
  for (QDockWidget* dock : findChildren<QDockWidget*>())
    if (dock->objectName() != QLatin1String("helpDock")) dock->show();
  statusBar()->showMessage(tr("Default layout restored"), 5000);
}

void MainWindow::closeEvent(QCloseEvent* event) {
  if (options_.use_settings) {
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/state"), saveState());
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
  const QFileInfo info(path);
  const QString suffix = info.suffix().toLower();
  if (info.isDir() || suffix == QLatin1String("gguf")) {
    openModel(path);
  } else if (suffix == QLatin1String("safetensors")) {
    openCacheFile(path);
  } else if (suffix == QLatin1String("kvscope")) {
    loadWorkspace(path);
  } else {
    openTextFile(path);
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
  openModel(fromPath(*model));
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
    const int tokens = o.value(QStringLiteral("approx_tokens")).toInt();
    dataset_combo_->addItem(tokens > 0 ? tr("%1 (~%2 tokens)").arg(id).arg(tokens) : id, dir.filePath(file));
    dataset_combo_->setItemData(dataset_combo_->count() - 1, title, Qt::ToolTipRole);
    if (id == def) dataset_combo_->setCurrentIndex(dataset_combo_->count() - 1);
  }
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
    const std::string bytes = read_file(toPath(path));
    const QString text = QString::fromUtf8(bytes.data(), qsizetype(bytes.size()));
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
  model_jobs_->start(tr("Loading cache %1").arg(QFileInfo(path).fileName()), [this, path](const ProgressFn&) {
    auto cache = std::make_shared<const kv::KVCache>(io::load_cache(toPath(path)));
    return std::function<void()>([this, cache, path] {
      session_->setCache(cache, QFileInfo(path).fileName());
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
  const std::string utf8 = text.toStdString();
  model_jobs_->start(tr("Prefilling %1").arg(name), [this, model, utf8, name](const ProgressFn& progress) {
    const auto& tok = model->tokenizer();
    std::vector<std::int32_t> tokens = tok.encode(utf8, tok.adds_bos());
    const int limit = model->config().context_length;
    if (limit > 0 && static_cast<int>(tokens.size()) > limit) tokens.resize(static_cast<std::size_t>(limit));
    if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "the context has no tokens");
    model::PrefillOptions options;
    options.progress = progress;
    options.want_last_logits = false;
    auto result = model->prefill(tokens, options);
    auto cache = std::make_shared<const kv::KVCache>(std::move(result.cache));
    return std::function<void()>([this, cache, name] {
      session_->setCache(cache, name);
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
  QJsonObject root;
  root[QStringLiteral("format")] = QStringLiteral("kvscope-workspace");
  root[QStringLiteral("version")] = 1;
  root[QStringLiteral("model")] = session_->modelPath();
  QJsonObject context;
  context[QStringLiteral("name")] = session_->contextName();
  context[QStringLiteral("text")] = session_->contextText();
  root[QStringLiteral("context")] = context;
#if KVSCOPE_GUI_HAVE_CODECS
  if (codec_panel_) {
    const codec::CodecConfig cfg = codec_panel_->config();
    QJsonObject params;
    for (const auto& [k, v] : cfg.params) params[qs(k)] = qs(v);
    root[QStringLiteral("codec")] =
        QJsonObject{{QStringLiteral("name"), qs(cfg.codec)}, {QStringLiteral("params"), params}};
  }
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  if (stream_panel_) {
    const stream::BandwidthProfile& bp = stream_panel_->profile();
    QJsonObject prof;
    const auto kind = bp.kind();
    prof[QStringLiteral("kind")] =
        kind == stream::BandwidthProfile::Kind::Constant    ? QStringLiteral("constant")
        : kind == stream::BandwidthProfile::Kind::Piecewise ? QStringLiteral("piecewise")
                                                            : QStringLiteral("per_chunk_random");
    prof[QStringLiteral("name")] = qs(bp.name());
    prof[QStringLiteral("description")] = qs(bp.description());
    QJsonArray points;
    for (const auto& pt : bp.points()) points.append(QJsonArray{pt.time_s, pt.mbps});
    prof[QStringLiteral("points")] = points;
    prof[QStringLiteral("min_mbps")] = bp.min_mbps();
    prof[QStringLiteral("max_mbps")] = bp.max_mbps();
    prof[QStringLiteral("seed")] = QString::number(bp.seed());  // 64-bit: a double would round it
    root[QStringLiteral("stream")] = QJsonObject{
        {QStringLiteral("profile"), prof},
        {QStringLiteral("slo_s"), stream_panel_->slo()},
        {QStringLiteral("chunk_tokens"), stream_panel_->chunkTokens()},
        {QStringLiteral("ladder"), QJsonDocument::fromJson(QByteArray::fromStdString(stream::ladder_to_json(
                                                               stream_panel_->currentLadder())))
                                       .object()}};
  }
#endif
  const QByteArray bytes = QJsonDocument(root).toJson();
  try {
    write_file_atomically(toPath(path), bytes.constData(), static_cast<std::size_t>(bytes.size()));
  } catch (const Error& e) {
    showError(tr("Save workspace"), QString::fromUtf8(e.what()));
    return false;
  }
  statusBar()->showMessage(tr("Workspace saved to %1").arg(path), 5000);
  return true;
}

namespace {

// Everything a workspace file restores, parsed and validated before any of
// it is applied.
struct Workspace {
  QString model;
  bool has_context = false;
  QString context_name, context_text;
#if KVSCOPE_GUI_HAVE_CODECS
  std::optional<codec::CodecConfig> codec;
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  std::optional<stream::BandwidthProfile> profile;
  std::optional<double> slo_s;
  std::optional<int> chunk_tokens;
  QString ladder_file;                   // a shipped ladder by name (older workspaces)
  std::optional<stream::Ladder> ladder;  // an embedded ladder
#endif
};

[[noreturn]] void bad(const std::string& message) {
  throw Error(ErrorCode::Format, message);
}

QJsonObject objectAt(const QJsonObject& o, const char* key, const char* where) {
  const QJsonValue v = o.value(QLatin1String(key));
  if (!v.isUndefined() && !v.isObject()) bad(std::string(where) + ": must be an object");
  return v.toObject();
}

QString stringAt(const QJsonObject& o, const char* key, const char* where) {
  const QJsonValue v = o.value(QLatin1String(key));
  if (!v.isUndefined() && !v.isString()) bad(std::string(where) + ": must be a string");
  return v.toString();
}

#if KVSCOPE_GUI_HAVE_STREAM
stream::BandwidthProfile parseProfile(const QJsonObject& prof) {
  const QString kind = stringAt(prof, "kind", "stream.profile.kind");
  stream::BandwidthProfile bp;
  if (kind == QLatin1String("constant") || kind == QLatin1String("piecewise")) {
    std::vector<stream::ProfilePoint> pts;
    for (const QJsonValue& v : prof.value(QStringLiteral("points")).toArray()) {
      const QJsonArray a = v.toArray();
      if (a.size() != 2 || !a[0].isDouble() || !a[1].isDouble())
        bad("stream.profile.points: each point must be [time_s, mbps]");
      pts.push_back({a[0].toDouble(), a[1].toDouble()});
    }
    if (kind == QLatin1String("constant")) {
      if (pts.size() != 1) bad("stream.profile: a constant profile has one point");
      bp = stream::BandwidthProfile::constant(pts[0].mbps);
    } else {
      bp = stream::BandwidthProfile::piecewise(std::move(pts));
    }
  } else if (kind == QLatin1String("per_chunk_random")) {
    bool ok = false;
    const std::uint64_t seed = prof.value(QStringLiteral("seed")).toString().toULongLong(&ok);
    if (!ok) bad("stream.profile.seed: not an unsigned integer");
    bp = stream::BandwidthProfile::per_chunk_random(prof.value(QStringLiteral("min_mbps")).toDouble(),
                                                    prof.value(QStringLiteral("max_mbps")).toDouble(), seed);
  } else {
    bad("stream.profile.kind: unknown kind \"" + kind.toStdString() + "\"");
  }
  bp.set_name(stringAt(prof, "name", "stream.profile.name").toStdString());
  bp.set_description(stringAt(prof, "description", "stream.profile.description").toStdString());
  return bp;
}
#endif

// Parses and validates a workspace document; throws Error naming the field.
Workspace parseWorkspace(const QJsonObject& root, const QString& path) {
  Workspace w;
  w.model = stringAt(root, "model", "model");
  if (root.contains(QStringLiteral("context"))) {
    const QJsonObject context = objectAt(root, "context", "context");
    w.has_context = true;
    w.context_name = stringAt(context, "name", "context.name");
    w.context_text = stringAt(context, "text", "context.text");
  }
#if KVSCOPE_GUI_HAVE_CODECS
  if (const QJsonObject c = objectAt(root, "codec", "codec"); !c.isEmpty()) {
    codec::CodecConfig cfg;
    cfg.codec = stringAt(c, "name", "codec.name").toStdString();
    const QJsonObject params = objectAt(c, "params", "codec.params");
    for (auto it = params.begin(); it != params.end(); ++it) {
      if (!it.value().isString()) bad("codec.params." + it.key().toStdString() + ": must be a string");
      cfg.params[it.key().toStdString()] = it.value().toString().toStdString();
    }
    if (const std::string problem = checkConfig(cfg, nullptr); !problem.empty()) bad("codec: " + problem);
    w.codec = std::move(cfg);
  }
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  const QJsonObject st = objectAt(root, "stream", "stream");
  if (const QJsonObject prof = objectAt(st, "profile", "stream.profile"); !prof.isEmpty()) {
    try {
      w.profile = parseProfile(prof);
    } catch (const Error& e) {
      bad(std::string("bad bandwidth profile: ") + e.what());
    }
  }
  if (st.contains(QStringLiteral("slo_s"))) {
    const QJsonValue v = st.value(QStringLiteral("slo_s"));
    if (!v.isDouble() || v.toDouble() < StreamPanel::kMinSlo || v.toDouble() > StreamPanel::kMaxSlo)
      bad("stream.slo_s: must be a number of seconds in [" + std::to_string(StreamPanel::kMinSlo) + ", " +
          std::to_string(StreamPanel::kMaxSlo) + "]");
    w.slo_s = v.toDouble();
  }
  if (st.contains(QStringLiteral("chunk_tokens"))) {
    const QJsonValue v = st.value(QStringLiteral("chunk_tokens"));
    const double d = v.toDouble();
    if (!v.isDouble() || d != std::floor(d) || d < StreamPanel::kMinChunkTokens ||
        d > StreamPanel::kMaxChunkTokens)
      bad("stream.chunk_tokens: must be an integer in [" + std::to_string(StreamPanel::kMinChunkTokens) +
          ", " + std::to_string(StreamPanel::kMaxChunkTokens) + "]");
    w.chunk_tokens = static_cast<int>(d);
  }
  const QJsonValue ladder = st.value(QStringLiteral("ladder"));
  if (ladder.isString()) {
    w.ladder_file = ladder.toString();
    const auto file = stream::ladder_dir() / (w.ladder_file.toStdString() + ".json");
    if (w.ladder_file.isEmpty() || w.ladder_file.contains(QLatin1Char('/')) || !std::filesystem::exists(file))
      bad("stream.ladder: unknown ladder \"" + w.ladder_file.toStdString() + "\"");
  } else if (ladder.isObject()) {
    const std::string text = QJsonDocument(ladder.toObject()).toJson().toStdString();
    stream::Ladder l;
    try {
      l = stream::parse_ladder(text, "stream.ladder");
    } catch (const Error& e) {
      bad(e.what());
    }
    if (const QString problem = validateLadder(l, nullptr); !problem.isEmpty())
      bad("stream.ladder: " + problem.toStdString());
    w.ladder = std::move(l);
  } else if (!ladder.isUndefined()) {
    bad("stream.ladder: must be a ladder name or a ladder object");
  }
#endif
  Q_UNUSED(path);
  return w;
}

}  // namespace

bool MainWindow::loadWorkspace(const QString& path) {
  QFile file(path);
  if (!file.open(QIODevice::ReadOnly)) {
    showError(tr("Open workspace"), tr("%1: cannot open: %2").arg(path, file.errorString()));
    return false;
  }
  QJsonParseError parse_error;
  const QJsonDocument doc = QJsonDocument::fromJson(file.readAll(), &parse_error);
  const QJsonObject root = doc.object();
  if (doc.isNull() || root.value(QStringLiteral("format")).toString() != QLatin1String("kvscope-workspace")) {
    showError(tr("Open workspace"),
              tr("%1: not a KVScope workspace (%2)")
                  .arg(path, doc.isNull() ? parse_error.errorString()
                                          : tr("missing format \"kvscope-workspace\"")));
    return false;
  }
  // Validate every part first: a bad part leaves the window exactly as it was.
  Workspace w;
  try {
    w = parseWorkspace(root, path);
  } catch (const Error& e) {
    showError(tr("Open workspace"), tr("%1: %2").arg(path, QString::fromUtf8(e.what())));
    return false;
  }
#if KVSCOPE_GUI_HAVE_CODECS
  if (codec_panel_ && w.codec) codec_panel_->setConfig(*w.codec);
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  if (stream_panel_) {
    if (w.profile) stream_panel_->setProfile(*w.profile);
    if (w.slo_s) stream_panel_->setSlo(*w.slo_s);
    if (w.chunk_tokens) stream_panel_->setChunkTokens(*w.chunk_tokens);
    if (w.ladder) stream_panel_->setLadder(*w.ladder);
    if (!w.ladder_file.isEmpty() && !stream_panel_->setLadder(w.ladder_file))
      showError(tr("Open workspace"), tr("%1: ladder \"%2\" does not load").arg(path, w.ladder_file));
  }
#endif
  const bool new_model = !w.model.isEmpty() && w.model != session_->modelPath();
  if (w.has_context && !w.context_text.isEmpty()) setContextText(w.context_name, w.context_text, !new_model);
  if (new_model) openModel(w.model);  // prefills the restored context once loaded
  statusBar()->showMessage(tr("Workspace %1 restored").arg(path), 5000);
  return true;
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
  const codec::CodecConfig config = codec_panel_->config();
  const std::string text = session_->contextText().toStdString();
  export_jobs_->start(tr("Exporting %1").arg(QFileInfo(path).fileName()),
                      [this, result, cache, config, text, path](const ProgressFn& progress) {
                        // The header-derived contents validate the bitstream; the
                        // cache adds what the header may omit (token ids, model).
                        io::Hdf5Contents contents =
                            io::hdf5_contents_from_bitstream(result->bytes, config.codec + " (KVScope GUI)");
                        contents.levels.at(0).config = config;
                        contents.info = cache->info;
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
