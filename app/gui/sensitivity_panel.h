// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QWidget>
#include <functional>
#include <memory>
#include <optional>

#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/codec.h"

class QDoubleSpinBox;
class QLabel;
class QPushButton;
class QCPBars;

namespace kvscope::gui {

class JobRunner;
class PlotWidget;
class Session;

/// The model's measured sensitivity to cachegen's bins, layer by layer (the
/// KL increase when one layer's keys or values alone are coarsened;
/// kvscope/codec/bin_plan.h): the paper's "shallow layers matter more" checked
/// on the user's own model. Shows the one kept in the model's calibration,
/// loads a measurement (`kvscope-cli sensitivity`) or measures one on the
/// current context, draws it, and plans per-layer bins
/// under a bits-per-element budget, which it hands to the codec panel.
class SensitivityPanel : public QWidget {
  Q_OBJECT

 public:
  /// `current_config` returns the codec panel's configuration.
  SensitivityPanel(Session* session, std::function<codec::CodecConfig()> current_config,
                   QWidget* parent = nullptr);
  ~SensitivityPanel() override;

  /// Shows a measurement (replacing the one shown).
  void setSensitivity(const codec::LayerSensitivity& s);
  const std::optional<codec::LayerSensitivity>& sensitivity() const { return sensitivity_; }
  /// Loads a section file or a calibration that keeps one; false (and a
  /// message in the status line) on error.
  bool loadFile(const QString& path);
  /// Unless the user loaded or measured the one shown: shows the sensitivity
  /// kept in the calibration of the session cache's model, if the
  /// calibration folder has one, else clears one shown from another model's
  /// calibration (read in the background; a damaged section is reported in
  /// the status line).
  void loadFromCalibration();
  /// Measures on the session's model and context (minutes: 1 + 2 x layers evaluations).
  void measure();
  /// Plans bins for the budget on the session's cache and emits planned().
  void plan();
  JobRunner* runner() const { return runner_.get(); }
  PlotWidget* plot() const { return plot_; }

 signals:
  /// A plan: the current configuration with per-layer key_bins/value_bins.
  void planned(const codec::CodecConfig& config);

 private:
  Session* session_;
  std::function<codec::CodecConfig()> current_config_;
  std::unique_ptr<JobRunner> runner_;
  QPushButton* open_;
  QPushButton* measure_;
  QPushButton* plan_;
  QDoubleSpinBox* budget_;
  QLabel* status_;
  PlotWidget* plot_;
  QCPBars* key_bars_;
  QCPBars* value_bars_;
  std::optional<codec::LayerSensitivity> sensitivity_;
  bool from_calibration_ = false;  ///< sensitivity_ came from the model's calibration

  void clear();
};

}  // namespace kvscope::gui
