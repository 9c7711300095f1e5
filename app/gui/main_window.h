// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QByteArray>
#include <QMainWindow>
#include <QMessageBox>
#include <QPointer>
#include <memory>

class QComboBox;
class QDockWidget;
class QLabel;
class QMenu;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QTextBrowser;

namespace kvscope::gui {

class CodecPanel;
class PipelinePanel;
class DistributionsPanel;
class HelpPanel;
class QualityService;
class RdPanel;
class StreamPanel;
class JobRunner;
class Session;
struct Workspace;

/// The KVScope main window: dockable panels over one shared Session.
/// Long work (model load, prefill, encode) runs on JobRunners; the event loop
/// never blocks. Errors go to errorShown() and a non-blocking dialog that
/// names the file and the problem.
class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  struct Options {
    /// Load the default model and context at startup (off in some tests).
    bool load_default = true;
    /// Remember geometry, dock layout and recent files in QSettings.
    bool use_settings = true;
    /// Keep prefills on disk between launches (PrefillCache).
    bool keep_prefills = true;
    /// Tokens a prefill keeps (the rest is cut, and said); 0 = the model's
    /// context length. Tests use a small one.
    int context_limit = 0;
  };
  explicit MainWindow(QWidget* parent = nullptr);
  explicit MainWindow(const Options& options, QWidget* parent = nullptr);
  ~MainWindow() override;

  Session* session() const { return session_; }
  JobRunner* modelJobs() const { return model_jobs_.get(); }
  DistributionsPanel* distributionsPanel() const { return distributions_; }
  /// Null when this build has no codec registry.
  CodecPanel* codecPanel() const { return codec_panel_; }
  PipelinePanel* pipelinePanel() const { return pipeline_panel_; }
  /// Null when this build has no quality evaluation (core/eval).
  QualityService* qualityService() const { return quality_; }
  RdPanel* rdPanel() const { return rd_panel_; }
  HelpPanel* helpPanel() const { return help_; }
  /// Null when this build has no streamer (core/stream).
  StreamPanel* streamPanel() const { return stream_panel_; }
  QMessageBox* lastErrorBox() const { return last_error_box_; }

  /// Loads a model file or folder on a worker, then prefills the current context.
  void openModel(const QString& path);
  /// Uses `text` as the context and prefills it (if a model is loaded).
  void setContextText(const QString& name, const QString& text, bool prefill = true);
  /// Reads a UTF-8 text file as the context; binary or non-UTF-8 files are
  /// an error naming the file.
  void openTextFile(const QString& path);
  /// Loads a KV cache instead of prefilling: a raw cache (.safetensors), one
  /// of the app's HDF5 exports or a .kvc bitstream (decoded), told apart by content.
  void openCacheFile(const QString& path);
  /// Opens any supported file by its content or suffix (model, text, raw
  /// cache, HDF5 export, bitstream, workspace): menu, command line, drop.
  void openPath(const QString& path);
  /// Runs the model over the current context on a worker.
  void prefill();
  void cancelJobs();

  bool saveWorkspace(const QString& path);
  bool loadWorkspace(const QString& path);
  /// Applies an already validated workspace (`path` names it in messages).
  void applyWorkspace(const Workspace& workspace, const QString& path);
#if KVSCOPE_GUI_HAVE_HDF5
  /// Writes the current encoded cache (codec panel's last result) to an HDF5
  /// file on a worker; emits exported() or shows an error naming the file.
  void exportHdf5(const QString& path);
#endif

  /// Shows a non-blocking error dialog and emits errorShown().
  void showError(const QString& title, const QString& message);
  void restoreDefaultLayout();
  /// Adds a view as a tab of the right-hand view area (Distributions,
  /// Rate-Distortion, Pipeline, Streaming, ...): how a new view joins the
  /// window. `object_name` names its dock for saved layouts and --show.
  QDockWidget* addView(const QString& title, const QString& object_name, QWidget* widget);

 signals:
  void errorShown(const QString& title, const QString& message);
  void modelLoaded();
  void prefilled();
  void exported(const QString& path);

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void buildMenus();
  QDockWidget* addPanel(const QString& title, const QString& object_name, QWidget* widget,
                        Qt::DockWidgetArea area);
  QWidget* buildContextPanel();
  void loadDatasetIndex();
  void startDefault();
  /// Loads the model startDefault() put off until the first plots were drawn.
  void loadDeferredModel();
  void updateModelInfo();
  /// Labels the shipped contexts with their token counts under the loaded model's tokenizer.
  void countDatasetTokens();
  /// Shows the prefill kept on disk under `key` (PrefillCache) on a worker;
  /// false when there is none.
  bool restoreCachedPrefill(const QString& key, const QString& name);
  void updateTokenInfo(qsizetype tokens);
  void addRecent(const QString& path);
  void rebuildRecentMenu();

  Options options_;
  Session* session_;
  QByteArray default_state_;
  QMenu* recent_menu_ = nullptr;
  QMenu* view_menu_ = nullptr;
  QLabel* model_info_ = nullptr;
  QLabel* token_info_ = nullptr;
  QComboBox* dataset_combo_ = nullptr;
  QPlainTextEdit* context_edit_ = nullptr;
  QPushButton* prefill_button_ = nullptr;
  QPushButton* cancel_button_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QLabel* progress_label_ = nullptr;
  DistributionsPanel* distributions_ = nullptr;
  CodecPanel* codec_panel_ = nullptr;
  PipelinePanel* pipeline_panel_ = nullptr;
  QualityService* quality_ = nullptr;
  RdPanel* rd_panel_ = nullptr;
  HelpPanel* help_ = nullptr;
  QDockWidget* first_view_ = nullptr;
  StreamPanel* stream_panel_ = nullptr;
  QPointer<QMessageBox> last_error_box_;
  bool prefill_after_load_ = true;
  QString cache_note_;
  QString deferred_model_;             ///< model to load once the kept prefill's first plots are drawn
  QString cache_key_;                  ///< PrefillCache key of the cache shown (empty: not a kept prefill)
  QString restoring_key_;              ///< key of a kept prefill being loaded
  const void* counted_for_ = nullptr;  ///< the model whose token counts label the contexts  ///< said with
                                       ///< the next cache (e.g. truncation), then cleared
  // Declared last: destroyed first, so no job outlives the state it writes to.
  std::unique_ptr<JobRunner> model_jobs_;
  std::unique_ptr<JobRunner> count_jobs_;
  std::unique_ptr<JobRunner> restore_jobs_;
  std::unique_ptr<JobRunner> export_jobs_;
};

}  // namespace kvscope::gui
