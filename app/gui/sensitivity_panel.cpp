// SPDX-License-Identifier: GPL-3.0-or-later
#include "sensitivity_panel.h"

#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QVBoxLayout>

#include "job_runner.h"
#include "kvscope/common/error.h"
#include "kvscope/eval/sensitivity.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

SensitivityPanel::SensitivityPanel(Session* session, std::function<codec::CodecConfig()> current_config,
                                   QWidget* parent)
    : QWidget(parent),
      session_(session),
      current_config_(std::move(current_config)),
      runner_(std::make_unique<JobRunner>(QStringLiteral("sensitivity"))) {
  open_ = new QPushButton(tr("Open..."));
  open_->setToolTip(
      tr("Load a measurement written by `kvscope-cli sensitivity --out FILE`, or a calibration "
         "that keeps one (`kvscope-cli calibrate --sensitivity FILE`)"));
  measure_ = new QPushButton(tr("Measure"));
  measure_->setObjectName(QStringLiteral("measureSensitivityButton"));
  measure_->setToolTip(
      tr("Every layer at 32 bins, then one layer's keys or values at a time at 10 bins, "
         "on the current context: 1 + 2 x layers model runs (minutes)."));
  budget_ = new QDoubleSpinBox;
  budget_->setRange(0.5, 8.0);
  budget_->setSingleStep(0.05);
  budget_->setDecimals(2);
  budget_->setValue(2.2);
  budget_->setSuffix(tr(" bits/element"));
  budget_->setToolTip(
      tr("Bits per element the planned bins may use on the current cache, every side "
         "information counted"));
  plan_ = new QPushButton(tr("Plan bins"));
  plan_->setObjectName(QStringLiteral("planBinsButton"));
  plan_->setToolTip(
      tr("Give each layer's keys and values bins in proportion to the square root of their "
         "sensitivity, scaled to the budget, and apply them in Codec Tuning"));
  plan_->setEnabled(false);
  status_ = new QLabel;
  status_->setWordWrap(true);

  plot_ = new PlotWidget;
  plot_->setObjectName(QStringLiteral("sensitivityPlot"));
  plot_->xAxis->setLabel(tr("layer"));
  plot_->yAxis->setLabel(tr("KL increase (nats) when this layer alone is coarse"));
  PlotWidget::setIntegerTicks(plot_->xAxis);
  key_bars_ = new QCPBars(plot_->xAxis, plot_->yAxis);
  key_bars_->setName(tr("keys"));
  value_bars_ = new QCPBars(plot_->xAxis, plot_->yAxis);
  value_bars_->setName(tr("values"));
  auto* group = new QCPBarsGroup(plot_);
  key_bars_->setBarsGroup(group);
  value_bars_->setBarsGroup(group);
  key_bars_->setWidth(0.4);
  value_bars_->setWidth(0.4);
  plot_->legend->setVisible(true);
  auto recolour = [this] {
    key_bars_->setBrush(plot_->seriesColor(0));
    key_bars_->setPen(Qt::NoPen);
    value_bars_->setBrush(plot_->seriesColor(1));
    value_bars_->setPen(Qt::NoPen);
    plot_->replot(QCustomPlot::rpQueuedReplot);
  };
  recolour();
  connect(plot_, &PlotWidget::paletteApplied, this, recolour);

  auto* controls = new QHBoxLayout;
  controls->addWidget(open_);
  controls->addWidget(measure_);
  controls->addStretch(1);
  controls->addWidget(budget_);
  controls->addWidget(plan_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(controls);
  layout->addWidget(status_);
  layout->addWidget(plot_, 1);

  connect(open_, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open sensitivity"));
    if (!path.isEmpty()) loadFile(path);
  });
  connect(measure_, &QPushButton::clicked, this, &SensitivityPanel::measure);
  connect(session_, &Session::cacheChanged, this, &SensitivityPanel::loadFromCalibration);
  connect(plan_, &QPushButton::clicked, this, &SensitivityPanel::plan);
  connect(runner_.get(), &JobRunner::progress, this, [this](double f, const QString& stage) {
    status_->setText(tr("%1 (%2%)").arg(stage).arg(int(100 * f)));
  });
  connect(runner_.get(), &JobRunner::failed, this,
          [this](const QString& title, const QString& message) { status_->setText(title + ": " + message); });
  connect(runner_.get(), &JobRunner::busyChanged, this, [this](bool busy) {
    measure_->setEnabled(!busy);
    plan_->setEnabled(!busy && sensitivity_.has_value());
  });
  clear();
}

SensitivityPanel::~SensitivityPanel() {
  runner_.reset();
}

void SensitivityPanel::setSensitivity(const codec::LayerSensitivity& s) {
  sensitivity_ = s;
  from_calibration_ = false;
  QVector<double> x, k, v;
  for (int l = 0; l < s.layers; ++l) {
    x << l;
    k << s.key_kl[l];
    v << s.value_kl[l];
  }
  key_bars_->setData(x, k, true);
  value_bars_->setData(x, v, true);
  plot_->refresh(true);
  QStringList contexts;
  for (const auto& c : s.contexts) contexts << QString::fromStdString(c);
  status_->setText(tr("Base: every layer at %1 bins (KL %2); one layer at %3 bins. %4 context(s): %5; %6 "
                      "context tokens, %7 scored.")
                       .arg(s.base_bins)
                       .arg(s.base_kl, 0, 'f', 4)
                       .arg(s.coarse_bins)
                       .arg(s.contexts.size())
                       .arg(contexts.join(QStringLiteral(", ")))
                       .arg(s.context_tokens)
                       .arg(s.scored_tokens));
  plan_->setEnabled(true);
}

bool SensitivityPanel::loadFile(const QString& path) {
  try {
    setSensitivity(codec::load_sensitivity(path.toStdString()));
    return true;
  } catch (const Error& e) {
    status_->setText(tr("Cannot load: %1").arg(QString::fromUtf8(e.what())));
    return false;
  }
}

void SensitivityPanel::loadFromCalibration() {
  const auto cache = session_->cache();
  // Never replaces one the user loaded or measured; one from the previous
  // model's calibration is replaced (or cleared) for the new cache's model.
  if (!cache || (sensitivity_ && !from_calibration_) || runner_->busy()) return;
  const kv::CacheInfo info = cache->info;
  // The folder scan reads calibration files (megabytes): off the GUI thread.
  runner_->start(tr("Looking for the model's calibration"), [this, info](const ProgressFn&) {
    auto found =
        std::make_shared<std::optional<codec::LayerSensitivity>>(codec::find_model_sensitivity(info));
    return std::function<void()>([this, found] {
      if (sensitivity_ && !from_calibration_) return;
      if (!*found) {
        if (from_calibration_) clear();
        return;
      }
      setSensitivity(**found);
      from_calibration_ = true;
      status_->setText(tr("From the model's calibration. %1").arg(status_->text()));
    });
  });
}

void SensitivityPanel::clear() {
  sensitivity_.reset();
  from_calibration_ = false;
  key_bars_->data()->clear();
  value_bars_->data()->clear();
  plot_->refresh(true);
  plan_->setEnabled(false);
  status_->setText(tr("No sensitivity measured yet: open one or measure it on the current context."));
}

void SensitivityPanel::measure() {
  const auto model = session_->model();
  const QString text = session_->contextText();
  if (!model || text.trimmed().isEmpty()) {
    status_->setText(tr("Load a model and a context first."));
    return;
  }
  codec::ParamSet params = current_config_ ? current_config_().params : codec::ParamSet{};
  const std::string utf8 = text.toStdString(), label = session_->contextName().toStdString();
  runner_->start(tr("Measuring sensitivity"), [this, model, params, utf8, label](const ProgressFn& progress) {
    eval::EvalConfig cfg;
    cfg.continuation_tokens = 64;
    cfg.greedy_tokens = 0;
    cfg.progress = progress;
    eval::Evaluator evaluator(*model, cfg);
    const eval::Reference& ref = evaluator.reference(utf8, label);
    auto s = std::make_shared<codec::LayerSensitivity>(
        eval::measure_sensitivity(evaluator, {&ref}, params, 32, 10));
    return std::function<void()>([this, s] { setSensitivity(*s); });
  });
}

void SensitivityPanel::plan() {
  const auto cache = session_->cache();
  if (!cache || !sensitivity_) {
    status_->setText(tr("Prefill a context and load or measure a sensitivity first."));
    return;
  }
  codec::CodecConfig config = current_config_ ? current_config_() : codec::CodecConfig{"cachegen", {}};
  config.codec = "cachegen";
  const auto s = *sensitivity_;
  const double budget = budget_->value();
  runner_->start(tr("Planning bins"), [this, cache, s, config, budget](const ProgressFn&) {
    codec::ParamSet base = config.params;
    auto plan = codec::plan_for_budget(*cache, base, s, budget);
    auto result = std::make_shared<codec::CodecConfig>(config);
    for (const auto& [k, v] : codec::plan_params(plan)) result->params[k] = v;
    return std::function<void()>([this, result] {
      status_->setText(tr("Planned: keys %1; values %2")
                           .arg(QString::fromStdString(result->params["key_bins"]))
                           .arg(QString::fromStdString(result->params["value_bins"])));
      emit planned(*result);
    });
  });
}

}  // namespace kvscope::gui
