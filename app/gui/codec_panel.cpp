#include "codec_panel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QSplitter>
#include <QVBoxLayout>
#include <cmath>

#include "help_text.h"
#include "job_runner.h"
#include "kvscope/codec/stage_analysis.h"
#include "param_editor.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}
}  // namespace

CodecPanel::CodecPanel(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), runner_(std::make_unique<JobRunner>(QStringLiteral("encode"))) {
  codec_combo_ = new QComboBox;
  codec_combo_->setObjectName(QStringLiteral("codecCombo"));
  for (const codec::Codec* c : codec::all_codecs()) {
    codec_combo_->addItem(qs(c->name()));
    codec_combo_->setItemData(codec_combo_->count() - 1, qs(c->description()), Qt::ToolTipRole);
  }
  codec_help_ = new QLabel;
  codec_help_->setWordWrap(true);
  params_ = new ParamEditor;
  params_->setObjectName(QStringLiteral("codecParams"));
  readout_ = new QLabel(tr("No cache yet."));
  readout_->setObjectName(QStringLiteral("sizeReadout"));
  readout_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  readout_->setToolTip(help::text(help::Concept::BitsPerElement));
  timing_ = new QLabel;
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  progress_->setMaximumHeight(12);
  progress_->setTextVisible(false);
  progress_->hide();

  waterfall_ = new PlotWidget;
  waterfall_->setObjectName(QStringLiteral("waterfallPlot"));
  // Horizontal bars, first stage on top: the stage names sit one per line
  // on the left, readable at any panel width.
  waterfall_->xAxis->setLabel(tr("bits per element"));
  waterfall_->yAxis->setRangeReversed(true);
  stage_bars_ = new QCPBars(waterfall_->yAxis, waterfall_->xAxis);
  stage_bars_->setName(tr("bits per element"));
  waterfall_->setHoverText([this](double, double y) {
    const auto ticker = waterfall_->yAxis->ticker().dynamicCast<QCPAxisTickerText>();
    const double key = std::round(y);
    auto it = stage_bars_->data()->findBegin(key, false);
    if (!ticker || it == stage_bars_->data()->constEnd() || it->key != key) return QString();
    return tr("%1: %2 bits per element").arg(ticker->ticks().value(key)).arg(it->value, 0, 'f', 3);
  });
  waterfall_->setToolTip(help::text(help::Concept::Entropy));

  layer_plot_ = new PlotWidget;
  layer_plot_->setObjectName(QStringLiteral("layerSizePlot"));
  layer_plot_->xAxis->setLabel(tr("layer"));
  PlotWidget::setIntegerTicks(layer_plot_->xAxis);
  layer_plot_->yAxis->setLabel(tr("encoded KB"));
  k_bars_ = new QCPBars(layer_plot_->xAxis, layer_plot_->yAxis);
  v_bars_ = new QCPBars(layer_plot_->xAxis, layer_plot_->yAxis);
  k_bars_->setName(tr("K"));
  v_bars_->setName(tr("V"));
  auto* group = new QCPBarsGroup(layer_plot_);
  k_bars_->setBarsGroup(group);
  v_bars_->setBarsGroup(group);
  k_bars_->setWidth(0.4);
  v_bars_->setWidth(0.4);
  layer_plot_->legend->setVisible(true);
  auto recolour = [this] {
    for (auto [bars, i] : {std::pair{k_bars_, 0}, std::pair{v_bars_, 1}, std::pair{stage_bars_, 2}}) {
      const QColor c = layer_plot_->seriesColor(i);
      bars->setPen(QPen(c.darker(120)));
      bars->setBrush(c);
    }
    layer_plot_->replot(QCustomPlot::rpQueuedReplot);
    waterfall_->replot(QCustomPlot::rpQueuedReplot);
  };
  connect(layer_plot_, &PlotWidget::paletteApplied, this, recolour);
  recolour();

  auto* top = new QWidget;
  auto* top_layout = new QVBoxLayout(top);
  top_layout->setContentsMargins(0, 0, 0, 0);
  auto* picker = new QHBoxLayout;
  picker->addWidget(new QLabel(tr("Codec:")));
  picker->addWidget(codec_combo_, 1);
  top_layout->addLayout(picker);
  top_layout->addWidget(codec_help_);
  top_layout->addWidget(params_);
  top_layout->addWidget(readout_);
  top_layout->addWidget(timing_);
  top_layout->addWidget(progress_);
  top_layout->addStretch(1);  // spare height goes to the plots, not between the controls
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->addWidget(top);
  splitter->addWidget(waterfall_);
  splitter->addWidget(layer_plot_);
  splitter->setStretchFactor(0, 0);
  splitter->setStretchFactor(1, 1);
  splitter->setStretchFactor(2, 1);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(splitter);

  connect(codec_combo_, &QComboBox::currentIndexChanged, this, [this] {
    rebuildControls();
    scheduleEncode();
  });
  connect(params_, &ParamEditor::changed, this, &CodecPanel::scheduleEncode);
  connect(session_, &Session::cacheChanged, this, [this] {
    rebuildControls();  // defaults may depend on the cache shape
    scheduleEncode();
  });
  connect(runner_.get(), &JobRunner::progress, this,
          [this](double f, const QString&) { progress_->setValue(static_cast<int>(f * 1000)); });
  connect(runner_.get(), &JobRunner::busyChanged, this, [this](bool busy) { progress_->setVisible(busy); });
  connect(runner_.get(), &JobRunner::failed, this, [this](const QString&, const QString& message) {
    readout_->setText(tr("Encode failed: %1").arg(message));
    emit errorOccurred(message);
  });
  const int cachegen = codec_combo_->findText(QStringLiteral("cachegen"));
  if (cachegen >= 0) codec_combo_->setCurrentIndex(cachegen);
  rebuildControls();
}

CodecPanel::~CodecPanel() = default;

void CodecPanel::rebuildControls() {
  // Keep the user's values across a rebuild for the same codec and model
  // geometry (a new context); shape-dependent defaults (layer groups) are
  // recomputed when the layer count or codec changes.
  const auto cache = session_->cache();
  const kv::CacheShape geometry =
      cache ? kv::CacheShape{cache->shape().layers, cache->shape().kv_heads, 0, cache->shape().head_dim}
            : kv::CacheShape{};
  const QString codec_name = codec_combo_->currentText();
  const bool keep = codec_name == built_codec_ && geometry == built_geometry_;
  built_codec_ = codec_name;
  built_geometry_ = geometry;
  if (codec_combo_->currentIndex() < 0) return;
  const codec::Codec& codec = codec::find_codec(codec_name.toStdString());
  codec_help_->setText(qs(codec.description()));
  params_->build(codec_name.toStdString(), cache ? &cache->shape() : nullptr, keep);
}

codec::CodecConfig CodecPanel::config() const {
  codec::CodecConfig c;
  c.codec = codec_combo_->currentText().toStdString();
  c.params = params_->values();
  return c;
}

bool CodecPanel::setConfig(const codec::CodecConfig& config) {
  const int i = codec_combo_->findText(qs(config.codec));
  if (i < 0) return false;
  codec_combo_->setCurrentIndex(i);
  for (const auto& [name, value] : config.params) setParam(qs(name), qs(value));
  return true;
}

bool CodecPanel::setParam(const QString& name, const QString& value) {
  return params_->setValue(name, value);
}

QString CodecPanel::timingBreakdown() const {
  return tr("GUI-thread listeners %1 ms, encode%2 on a worker %3 ms, redraw %4 ms")
      .arg(listeners_ms_, 0, 'f', 1)
      .arg(stages_ ? tr(" + stage analysis") : QString())
      .arg(worker_ms_, 0, 'f', 1)
      .arg(redraw_ms_, 0, 'f', 1);
}

QString CodecPanel::sizeReadout() const {
  return readout_->text();
}

void CodecPanel::scheduleEncode() {
  // Timed from here: what listeners of configChanged() do on the GUI thread
  // (the pipeline trace) is part of the wait the user sees.
  change_timer_.start();
  emit configChanged();
  const auto cache = session_->cache();
  if (!cache || cache->empty() || codec_combo_->currentIndex() < 0) return;
  listeners_ms_ = change_timer_.nsecsElapsed() / 1e6;
  const codec::CodecConfig cfg = config();
  runner_->start(tr("Encoding (%1)").arg(qs(cfg.codec)), [this, cache, cfg](const ProgressFn& progress) {
    QElapsedTimer worker;
    worker.start();
    codec::EncodeOptions options;
    options.progress = progress;
    std::shared_ptr<const codec::StageAnalysis> stages;
    std::shared_ptr<const codec::EncodeResult> result;
    if (cfg.codec == "cachegen") {
      // One call gives both the stream and where its bits went, stage by stage.
      auto analysis =
          std::make_shared<codec::StageAnalysis>(codec::analyze_stages(*cache, cfg.params, options));
      result = std::make_shared<const codec::EncodeResult>(std::move(analysis->encoded));
      analysis->encoded = {};
      stages = std::move(analysis);
    } else {
      result = std::make_shared<const codec::EncodeResult>(codec::encode(*cache, cfg, options));
    }
    const kv::CacheShape shape = cache->shape();
    const double worker_ms = worker.nsecsElapsed() / 1e6;
    return std::function<void()>([this, result, stages, shape, worker_ms] {
      worker_ms_ = worker_ms;
      showResult(result, stages, shape);
    });
  });
}

void CodecPanel::showResult(std::shared_ptr<const codec::EncodeResult> result,
                            std::shared_ptr<const codec::StageAnalysis> stages, const kv::CacheShape& shape) {
  QElapsedTimer redraw;
  redraw.start();
  result_ = std::move(result);
  stages_ = std::move(stages);
  const codec::SizeReport& s = result_->size;
  const std::size_t int8 = codec::int8_reference_bytes(shape);
  const double vs_int8 = s.encoded_bytes == 0 ? 0.0 : double(int8) / double(s.encoded_bytes);
  readout_->setText(tr("<b>%1 bits/element</b> &nbsp; %2 KB &nbsp; %3x smaller than fp16 &nbsp; %4x vs int8"
                       "<br>header %5 B, tables %6 B, steps %9 B, payload %7 B; encode %8 ms")
                        .arg(s.bits_per_element(), 0, 'f', 3)
                        .arg(double(s.encoded_bytes) / 1024.0, 0, 'f', 1)
                        .arg(s.ratio_vs_fp16(), 0, 'f', 2)
                        .arg(vs_int8, 0, 'f', 2)
                        .arg(s.header_bytes)
                        .arg(s.table_bytes)
                        .arg(s.payload_bytes)
                        .arg(result_->seconds * 1000, 0, 'f', 1)
                        .arg(s.step_bytes));

  // Bits per element: fp16, int8 baseline, the entropy of the coded symbols
  // (the bound an ideal coder reaches) and what this codec actually wrote.
  QVector<double> keys, values;
  QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
  auto add = [&](const QString& label, double v) {
    keys << keys.size() + 1;
    values << v;
    ticker->addTick(keys.back(), label);
  };
  const double elements = double(std::max<std::size_t>(s.elements, 1));
  add(tr("fp16"), 16.0);
  add(tr("int8 baseline"), 8.0 * double(int8) / elements);
  if (stages_) {
    // cachegen: fixed-length symbols -> their entropy -> after anchor/delta -> what the coder wrote.
    add(tr("quantized"), stages_->quantized_fixed.overall);
    add(tr("entropy (raw)"), stages_->raw_entropy.overall);
    add(tr("entropy (delta)"), stages_->delta_entropy.overall);
    add(tr("coded payload"), stages_->coded_payload);
    add(tr("coded (all)"), stages_->coded.overall);
  } else {
    if (s.entropy_bits_per_element > 0) add(tr("symbol entropy"), s.entropy_bits_per_element);
    add(tr("payload"), 8.0 * double(s.payload_bytes) / elements);
    add(tr("encoded (all)"), s.bits_per_element());
  }
  stage_bars_->setData(keys, values, true);
  waterfall_->yAxis->setTicker(ticker);
  waterfall_->refresh(true);

  QVector<double> layers, kb, vb;
  for (int l = 0; l < shape.layers; ++l) {
    const std::size_t ki = static_cast<std::size_t>(l) * 2;
    if (ki + 1 >= s.layer_bytes.size()) break;
    layers << l;
    kb << double(s.layer_bytes[ki]) / 1024.0;
    vb << double(s.layer_bytes[ki + 1]) / 1024.0;
  }
  k_bars_->setData(layers, kb, true);
  v_bars_->setData(layers, vb, true);
  layer_plot_->refresh(true);

  redraw_ms_ = redraw.nsecsElapsed() / 1e6;
  if (change_timer_.isValid()) last_update_ms_ = change_timer_.nsecsElapsed() / 1e6;
  timing_->setText(
      tr("re-encode + redraw: %1 ms (%2)").arg(last_update_ms_, 0, 'f', 1).arg(timingBreakdown()));
  emit encoded();
}

}  // namespace kvscope::gui
