// SPDX-License-Identifier: GPL-3.0-or-later
#include "spectrum_panel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "job_runner.h"
#include "kvscope/codec/calibration_builder.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/codec/codec.h"
#include "kvscope/kv/rope.h"
#include "labeled_control.h"
#include "on_screen.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

SpectrumPanel::SpectrumPanel(Session* session, std::function<codec::CodecConfig()> config, QWidget* parent)
    : QWidget(parent),
      session_(session),
      config_(std::move(config)),
      runner_(std::make_unique<JobRunner>(QStringLiteral("spectrum"))),
      calibration_runner_(std::make_unique<JobRunner>(QStringLiteral("calibration"))) {
  auto* controls = new QHBoxLayout;
  auto add = [&](const QString& label, QWidget* w, const QString& tip) {
    addLabeledControl(controls, label, w, tip);
  };
  layer_ = new QSpinBox;
  layer_->setObjectName(QStringLiteral("spectrumLayer"));
  add(tr("Layer"), layer_, tr("Transformer layer"));
  kind_ = new QComboBox;
  kind_->addItems({tr("K"), tr("V")});
  add(tr("K|V"), kind_, tr("Keys (before RoPE when the cache allows) or values"));
  group_ = new QSpinBox;
  add(tr("KV head"), group_, tr("Basis group: the KV head when the codec's grouping is 'head'"));
  controls->addStretch(1);
  calibrate_ = new QPushButton(tr("Calibrate from this context"));
  calibrate_->setObjectName(QStringLiteral("spectrumCalibrate"));
  calibrate_->setToolTip(tr(
      "Writes a calibration file from this context and selects it in the codec panel: the transform "
      "bases (keys before RoPE), cachegen's channel weighting (from the query energies the prefill "
      "measured; none for a cache opened from a file) and cachegen's tables, counted weighted at the codec "
      "panel's cachegen settings. Cachegen then takes its tables and weighting from the file (profile; "
      "at other bins it keeps the weighting and ships its own tables); any other codec switches to "
      "transform with the bases. "
      "A calibration fits the context it came from better than other texts: for honest numbers "
      "calibrate on other texts (kvscope-cli calibrate --context ...)."));
  controls->addWidget(calibrate_);
  connect(calibrate_, &QPushButton::clicked, this, &SpectrumPanel::calibrateFromCache);

  summary_ = new QLabel;
  summary_->setObjectName(QStringLiteral("spectrumSummary"));
  summary_->setWordWrap(true);
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);

  spectrum_ = new PlotWidget;
  spectrum_->setObjectName(QStringLiteral("spectrumPlot"));
  spectrum_->setMinimumHeight(160);
  spectrum_->yAxis->setScaleType(QCPAxis::stLogarithmic);
  spectrum_->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
  spectrum_->yAxis->setLabel(tr("component variance"));
  spectrum_->xAxis->setLabel(tr("PCA component (largest variance first)"));
  PlotWidget::setIntegerTicks(spectrum_->xAxis);
  basis_graph_ = spectrum_->addGraph();
  basis_graph_->setName(tr("basis (calibration)"));
  cache_graph_ = spectrum_->addGraph();
  cache_graph_->setName(tr("this cache"));
  water_ = spectrum_->addGraph();
  water_->setName(tr("water level (step\u00b2/12)"));
  spectrum_->legend->setVisible(true);

  bits_ = new PlotWidget;
  bits_->setObjectName(QStringLiteral("spectrumBitsPlot"));
  bits_->setMinimumHeight(140);
  bits_->yAxis->setLabel(tr("bits per token"));
  bits_->xAxis->setLabel(tr("PCA component"));
  PlotWidget::setIntegerTicks(bits_->xAxis);
  bits_bars_ = new QCPBars(bits_->xAxis, bits_->yAxis);
  bits_bars_->setName(tr("bits given by the budget"));
  bits_bars_->setWidth(0.8);

  auto recolour = [this] {
    basis_graph_->setPen(QPen(spectrum_->seriesColor(0), 2));
    cache_graph_->setPen(QPen(spectrum_->seriesColor(1), 1.5));
    water_->setPen(QPen(spectrum_->seriesColor(3), 1.5, Qt::DashLine));
    bits_bars_->setBrush(bits_->seriesColor(2));
    bits_bars_->setPen(Qt::NoPen);
    spectrum_->replot(QCustomPlot::rpQueuedReplot);
    bits_->replot(QCustomPlot::rpQueuedReplot);
  };
  recolour();
  connect(spectrum_, &PlotWidget::paletteApplied, this, recolour);
  connect(bits_, &PlotWidget::paletteApplied, this, recolour);

  auto* split = new QSplitter(Qt::Vertical);
  split->addWidget(spectrum_);
  split->addWidget(bits_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(controls);
  layout->addWidget(summary_);
  layout->addWidget(split, 1);

  for (QSpinBox* s : {layer_, group_})
    connect(s, qOverload<int>(&QSpinBox::valueChanged), this, [this] {
      if (!updating_) redraw();
    });
  connect(kind_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] {
    if (!updating_) redraw();
  });
  when_shown_ = new WhenShown(this, [this] { startPlan(); });
  connect(session_, &Session::cacheChanged, this, &SpectrumPanel::refresh);
  connect(runner_.get(), &JobRunner::failed, this, [this](const QString&, const QString& message) {
    plan_.reset();
    summary_->setText(tr("The transform plan failed: %1").arg(message));
  });
  connect(calibration_runner_.get(), &JobRunner::failed, this,
          [this](const QString&, const QString& message) { emit calibrationFailed(message); });
  connect(calibration_runner_.get(), &JobRunner::busyChanged, this,
          [this](bool busy) { calibrate_->setEnabled(!busy); });
  summary_->setText(tr("Prefill a context to see how the transform codec spends its bits."));
}

SpectrumPanel::~SpectrumPanel() = default;

QString SpectrumPanel::summary() const {
  return summary_->text();
}

void SpectrumPanel::setSelection(int layer, int kind, int group) {
  {
    QSignalBlocker a(layer_), b(kind_), c(group_);
    layer_->setValue(layer);
    kind_->setCurrentIndex(std::clamp(kind, 0, 1));
    group_->setValue(group);
  }
  redraw();
}

bool SpectrumPanel::weightingRequested() const {
  const auto given = planned_params_.find("key_weighting");
  if (given != planned_params_.end()) return std::atof(given->second.c_str()) > 0;
  for (const auto& spec : codec::find_codec("transform").params(nullptr))
    if (spec.name == "key_weighting") return std::atof(spec.default_value.c_str()) > 0;
  return false;
}

void SpectrumPanel::refresh() {
  when_shown_->request();
}

void SpectrumPanel::startPlan() {
  const auto cache = session_->cache();
  if (!cache || cache->empty()) return;
  codec::CodecConfig cfg = config_ ? config_() : codec::CodecConfig{};
  settings_note_.clear();
  if (cfg.codec != "transform") {
    settings_note_ = tr("The codec panel shows %1: transform's default settings are drawn.")
                         .arg(QString::fromStdString(cfg.codec));
    cfg = {"transform", {}};
  }
  // Parameter changes of another codec do not change this view.
  const codec::ParamSet params = cfg.params;
  if (plan_ && cache == planned_cache_.lock() && params == planned_params_) return;
  planned_cache_ = cache;
  planned_params_ = params;
  runner_->start(tr("Transform spectrum"), [this, cache, params](const ProgressFn& progress) {
    report_progress(progress, 0.0, "transform plan");
    auto plan = std::make_shared<const codec::transform::TransformPlan>(
        codec::transform::plan_transform(*cache, params));
    return std::function<void()>([this, plan] {
      plan_ = plan;
      redraw();
      emit planned();
    });
  });
}

void SpectrumPanel::calibrateFromCache() {
  const auto cache = session_->cache();
  if (!cache || cache->empty()) return;
  const auto weights = session_->channelWeights();
  // Tables at the settings the codec panel encodes with, when it shows
  // cachegen: an encoder given this file as `profile` then fits them.
  const codec::CodecConfig cfg = config_ ? config_() : codec::CodecConfig{};
  const codec::ParamSet cachegen = cfg.codec == "cachegen" ? cfg.params : codec::ParamSet{};
  const auto delta_mode = cachegen.find("delta_mode");
  const bool tables = delta_mode == cachegen.end() || delta_mode->second != "float";
  calibration_runner_->start(
      tr("Calibration"), [this, cache, weights, cachegen, tables](const ProgressFn& progress) {
        kv::KVCache pre = *cache;
        if (pre.info.rope_applied && pre.shape().head_dim % 2 == 0) kv::remove_rope(pre);
        pre.info.rope_applied = false;  // keys as the transform codec codes them
        codec::calibration::CalibrationSources sources;
        sources.contexts = std::span(&pre, 1);
        if (weights) {
          sources.key_weight = weights->key;
          sources.value_weight = weights->value;
        }
        // The cache as the encoder gets it: cachegen removes RoPE itself where
        // its key_space says so, so the tables count what streams code.
        if (tables) sources.table_caches = std::span(cache.get(), 1);
        codec::calibration::CalibrationBuildOptions options;
        options.cachegen = cachegen;
        options.progress = progress;
        const auto built = codec::calibration::build_calibration_file(sources, options);
        const auto path = codec::calibration::save(codec::calibration::serialize(built.file),
                                                   codec::calibration::default_calibration_dir());
        const QString qpath = QString::fromStdString(path.string());
        QStringList sections;
        for (const auto& [name, payload] : built.file.sections) sections << QString::fromStdString(name);
        return std::function<void()>([this, qpath, sections] { emit calibrated(qpath, sections); });
      });
}

void SpectrumPanel::redraw() {
  if (!plan_ || plan_->groups.empty()) return;
  const int groups_per_lk = plan_->grouping == codec::transform::Grouping::Head
                                ? int(plan_->groups.size()) / int(2 * (plan_->groups.back().layer + 1))
                                : 1;
  const int layers = plan_->groups.back().layer + 1;
  {
    QSignalBlocker a(layer_), c(group_);
    updating_ = true;
    layer_->setRange(0, layers - 1);
    group_->setRange(0, groups_per_lk - 1);
    group_->setEnabled(groups_per_lk > 1);
    updating_ = false;
  }
  const std::size_t index =
      (std::size_t(layer_->value()) * 2 + std::size_t(kind_->currentIndex())) * groups_per_lk +
      group_->value();
  const auto& g = plan_->groups.at(index);
  const int n = int(g.cache_variance.size());
  QVector<double> x(n), basis(n), own(n), bits(n);
  double total = 0, top = 0, coded_bits = 0;
  int coded = 0;
  for (int j = 0; j < n; ++j) {
    x[j] = j;
    basis[j] = std::max(g.basis_variance[j], 1e-12);
    own[j] = std::max(g.cache_variance[j], 1e-12);
    bits[j] = g.bits_per_token[j];
    total += g.basis_variance[j];
    if (j < std::max(1, n / 10)) top += g.basis_variance[j];
    coded += g.bits_per_token[j] > 0;
    coded_bits += g.bits_per_token[j];
  }
  basis_graph_->setData(x, basis, true);
  cache_graph_->setData(x, own, true);
  bits_bars_->setData(x, bits, true);
  // Components whose variance is below step^2/12 (the distortion a coded
  // component gets) are not worth their bits: the water level. Query
  // weighting gives each component its own step, so the level is a curve.
  QVector<double> level(n);
  double step_min = g.step, step_max = g.step;
  for (int j = 0; j < n; ++j) {
    const double step = j < int(g.component_step.size()) ? g.component_step[j] : g.step;
    level[j] = std::max(step * step / 12.0, 1e-12);
    step_min = std::min(step_min, step);
    step_max = std::max(step_max, step);
  }
  water_->setData(x, level, true);
  water_->setVisible(g.step > 0);
  spectrum_->refresh();
  bits_->refresh();
  const auto& e = plan_->estimate;
  const double total_bytes = std::max<double>(1.0, double(e.total()));
  summary_->setText(
      tr("<b>Layer %1 %2%3</b>: the first 10% of the components hold %4% of the variance; the budget codes "
         "<b>%5 of %6</b> components (%7 bits per token, step %8; dashed: the water level "
         "step&sup2;/12).%14<br>"
         "Whole cache: %9 bits/element estimated; basis %10%, side information %11%, exact sink/recent "
         "tokens %12%, coefficients %13% of the bytes.%15")
          .arg(layer_->value())
          .arg(kind_->currentIndex() == 0 ? tr("keys") : tr("values"))
          .arg(groups_per_lk > 1 ? tr(", KV head %1").arg(group_->value()) : QString())
          .arg(total > 0 ? 100.0 * top / total : 0.0, 0, 'f', 1)
          .arg(coded)
          .arg(n)
          .arg(coded_bits, 0, 'f', 1)
          .arg(g.step, 0, 'g', 3)
          .arg(plan_->bits_per_element, 0, 'f', 3)
          .arg(100.0 * double(e.basis) / total_bytes, 0, 'f', 1)
          .arg(100.0 * double(e.side) / total_bytes, 0, 'f', 1)
          .arg(100.0 * double(e.exact) / total_bytes, 0, 'f', 1)
          .arg(100.0 * double(e.payload) / total_bytes, 0, 'f', 1)
          .arg((step_max > step_min * 1.001
                    ? tr(" Query weighting: each component's step follows how strongly the queries read its "
                         "channels, from %1 to %2.")
                          .arg(step_min, 0, 'g', 3)
                          .arg(step_max, 0, 'g', 3)
                : weightingRequested() && plan_->key_weighting == 0
                    ? tr(" Query weighting is off: no channel weights at hand (they come with a calibration "
                         "made after a prefill: Calibrate here, or kvscope-cli calibrate --context).")
                    : QString()) +
               (kind_->currentIndex() == 1 && plan_->value_gain > 0
                    ? tr(" Value token gains (value_gain %1): each token's value coefficients are divided by "
                         "its gain before coding, so tokens near the mean get finer steps; the variances "
                         "drawn are those of the coefficients as coded.")
                          .arg(plan_->value_gain)
                    : QString()))
          .arg(settings_note_.isEmpty() ? QString() : QStringLiteral("<br>") + settings_note_));
}

}  // namespace kvscope::gui
