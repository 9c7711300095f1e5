// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QWidget>
#include <functional>
#include <memory>
#include <vector>

#include "kvscope/codec/codec.h"

class QLabel;
class QPushButton;
class QSpinBox;
class QCPBars;
class QCPGraph;

namespace kvscope::gui {

class JobRunner;
class PlotWidget;
class Session;

/// How much attention each token of the cache draws (the runtime measurement
/// model::Model::attention_to_cache): the last `query tokens` of the context
/// are fed after the cache of the tokens before them, and the panel shows the
/// share of their attention each early token receives (mean over layers) and,
/// per layer, the share the first N tokens draw, N being the codec's `sinks`.
/// This is why cachegen keeps attention sinks exact: a token drawing half of
/// the attention amplifies any error in its keys and values.
class AttentionPanel : public QWidget {
  Q_OBJECT

 public:
  /// `current_config` returns the codec panel's configuration (for `sinks`).
  AttentionPanel(Session* session, std::function<codec::CodecConfig()> current_config,
                 QWidget* parent = nullptr);
  ~AttentionPanel() override;

  /// Starts the measurement on the session's model and cache.
  void measure();
  /// [layer][token] weights of the last measurement (empty before one).
  const std::vector<float>& weights() const { return weights_; }
  int measuredLayers() const { return layers_; }
  QString summary() const;
  JobRunner* runner() const { return runner_.get(); }
  /// Redraws the per-layer sink share for the codec's current `sinks`.
  void redraw();

 signals:
  void measured();

 private:
  Session* session_;
  std::function<codec::CodecConfig()> current_config_;
  std::unique_ptr<JobRunner> runner_;
  QPushButton* measure_;
  QSpinBox* queries_;
  QLabel* status_;
  PlotWidget* token_plot_;
  PlotWidget* layer_plot_;
  QCPBars* token_bars_;
  QCPGraph* sink_share_;
  std::vector<float> weights_;
  int layers_ = 0, tokens_ = 0;
};

}  // namespace kvscope::gui
