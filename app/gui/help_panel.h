// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QTextBrowser>
#include <memory>
#include <vector>

#include "kvscope/kv/kv_cache.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "kvscope/codec/stage_analysis.h"
#endif

namespace kvscope::gui {

class Session;
class WhenShown;

/// One line of what the last streaming run delivered, for the help's recipe.
struct StreamOutcome {
  QString policy;
  double ttft_s = 0, slo_s = 0;
  bool slo_met = false;
};

/// Help as a how-to: task recipes ("find the smallest setting with KL under
/// 0.01", "see why shallow layers matter", "make adaptation meet an SLO",
/// ...) whose steps link to the panels they use (a click raises the panel),
/// followed by the concepts glossary. Statements about the data are computed
/// from what is loaded (the cache's shape, the codec's stage analysis, the
/// last streaming run), never asserted: without the data a recipe says what
/// to run to get it.
class HelpPanel : public QTextBrowser {
  Q_OBJECT

 public:
  explicit HelpPanel(Session* session, QWidget* parent = nullptr);

#if KVSCOPE_GUI_HAVE_CODECS
  /// The current cachegen stage analysis (null: none, e.g. another codec).
  void setStages(std::shared_ptr<const codec::StageAnalysis> stages);
#endif
  void setStreamOutcomes(std::vector<StreamOutcome> outcomes);
  /// The page as plain text, brought up to date first.
  QString page();

  QSize sizeHint() const override {
    return {420, 600};
  }

 signals:
  /// A recipe link asks for a panel (a dock object name, e.g. "rdDock").
  void showPanel(const QString& dock_name);

 protected:
 private:
  /// Rebuilds now when shown, else at the next show (a retune must not pay for a hidden page).
  void invalidate();
  void rebuild();
  bool dirty_ = true;
  WhenShown* when_shown_;

  Session* session_;
#if KVSCOPE_GUI_HAVE_CODECS
  std::shared_ptr<const codec::StageAnalysis> stages_;
#endif
  std::vector<StreamOutcome> outcomes_;
};

}  // namespace kvscope::gui
