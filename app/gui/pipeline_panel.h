// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QWidget>
#include <functional>

#include "kvscope/codec/codec.h"
#include "kvscope/codec/pipeline_trace.h"

class QComboBox;
class QLabel;
class QSpinBox;
class QTableWidget;
class QTextBrowser;
class QCPBars;

namespace kvscope::gui {

class PlotWidget;
class Session;
class WhenShown;

/// Teaching view: one token's values of a chosen layer, K or V and channel
/// range going through each cachegen stage (original value, bin step and
/// quantized Q, anchor or delta, the coded symbol and the probability the
/// range coder gives it, the decoded value and its error), computed by
/// core/codec's trace_pipeline() with the current codec settings, plus the
/// coder's probability model of the first traced channel. Tracing runs on
/// the GUI thread (a few hundred ms on a 1,700-token cache), so settings and
/// cache changes re-trace only while the view is on screen (requestRefresh()).
class PipelinePanel : public QWidget {
  Q_OBJECT

 public:
  /// `config` returns the codec settings to trace (cachegen's parameters are
  /// used when it is cachegen; otherwise cachegen's defaults, said on screen).
  PipelinePanel(Session* session, std::function<codec::CodecConfig()> config, QWidget* parent = nullptr);

  /// Chooses what to trace; values are clamped to the cache.
  void setSelection(int layer, int kind, int token, int first_channel, int channel_count);
  /// The last trace shown (empty elements when there is no cache or it failed).
  const codec::PipelineTrace& trace() const { return trace_; }
  QTableWidget* table() const { return table_; }
  PlotWidget* modelPlot() const { return model_plot_; }
  QString explanation() const;

 public slots:
  /// Recomputes the trace now.
  void refresh();
  /// Recomputes the trace now if the view is on screen, else once it is
  /// (call when the codec settings change).
  void requestRefresh();

 signals:
  void traced();

 private:
  void onCacheChanged();

  Session* session_;
  std::function<codec::CodecConfig()> config_;
  WhenShown* when_shown_;
  QSpinBox* layer_;
  QComboBox* kind_;
  QSpinBox* token_;
  QSpinBox* first_channel_;
  QSpinBox* channel_count_;
  QLabel* header_;
  QTableWidget* table_;
  QTextBrowser* explain_;
  PlotWidget* model_plot_;
  QCPBars* model_bars_;
  QCPBars* coded_bar_;
  codec::PipelineTrace trace_;
  bool updating_ = false;
};

}  // namespace kvscope::gui
