// SPDX-License-Identifier: GPL-3.0-or-later
#include "distributions_panel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "help_text.h"
#include "job_runner.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

namespace {
// The entropy bars: first as the active codec quantizes (cachegen's stage
// analysis with the current settings: what predicts coded bits), then at one
// per-channel step (kv::compute_stats: a property of the data, not of any
// codec), each labelled as what it is.
enum Metric { StdRaw = 0, CodecRaw, CodecDelta, EntropyRaw, EntropyAnchor, EntropyPrev, Outliers };
}  // namespace

DistributionsPanel::DistributionsPanel(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), runner_(std::make_unique<JobRunner>(QStringLiteral("stats"))) {
  auto* controls = new QHBoxLayout;
  layer_ = new QSpinBox;
  layer_->setObjectName(QStringLiteral("layerSpin"));
  layer_->setPrefix(tr("layer "));
  layer_->setToolTip(tr("Transformer layer whose cache is shown."));
  kind_ = new QComboBox;
  kind_->addItem(tr("K (keys)"));
  kind_->addItem(tr("V (values)"));
  kind_->setToolTip(help::text(help::Concept::KeysValues));
  head_ = new QSpinBox;
  head_->setPrefix(tr("KV head "));
  head_->setToolTip(tr("Key/value head of the heatmap: a layer has kv_heads x head_dim channels."));
  entropy_bins_ = new QSpinBox;
  entropy_bins_->setObjectName(QStringLiteral("entropyBinsSpin"));
  entropy_bins_->setRange(4, 65536);
  entropy_bins_->setValue(32);
  entropy_bins_->setPrefix(tr("entropy bins "));
  entropy_bins_->setToolTip(help::text(help::Concept::Bins) + QStringLiteral("\n\n") +
                            help::text(help::Concept::Entropy));
  group_size_ = new QSpinBox;
  group_size_->setRange(1, 4096);
  group_size_->setValue(10);
  group_size_->setPrefix(tr("anchor group "));
  group_size_->setSuffix(tr(" tokens"));
  group_size_->setToolTip(help::text(help::Concept::Anchor));
  for (QWidget* w :
       {static_cast<QWidget*>(layer_), static_cast<QWidget*>(kind_), static_cast<QWidget*>(head_),
        static_cast<QWidget*>(entropy_bins_), static_cast<QWidget*>(group_size_)})
    controls->addWidget(w);
  controls->addStretch();

  summary_ = new QLabel(tr("No cache yet: load a model and prefill a context."));
  summary_->setWordWrap(true);

  heatmap_ = new PlotWidget;
  heatmap_->setObjectName(QStringLiteral("heatmapPlot"));
  heatmap_->xAxis->setLabel(tr("token"));
  heatmap_->yAxis->setLabel(tr("dim within KV head"));
  PlotWidget::setIntegerTicks(heatmap_->xAxis);
  PlotWidget::setIntegerTicks(heatmap_->yAxis);
  map_ = new QCPColorMap(heatmap_->xAxis, heatmap_->yAxis);
  map_->setName(tr("value"));
  map_->setInterpolate(false);
  scale_ = new QCPColorScale(heatmap_);
  heatmap_->plotLayout()->addElement(0, 1, scale_);
  scale_->setType(QCPAxis::atRight);
  map_->setColorScale(scale_);
  map_->setGradient(QCPColorGradient::gpPolar);
  auto* margins = new QCPMarginGroup(heatmap_);
  heatmap_->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
  scale_->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
  heatmap_->setToolTip(help::text(help::Concept::Heatmap) +
                       tr("\n\nWheel: zoom along tokens; drag: pan; double-click: all tokens."));
  // Thousands of tokens against 64 dims: zoom and pan along tokens only.
  heatmap_->axisRect()->setRangeZoom(Qt::Horizontal);
  heatmap_->axisRect()->setRangeDrag(Qt::Horizontal);
  heatmap_->applyPalette();

  histogram_ = new PlotWidget;
  histogram_->setObjectName(QStringLiteral("histogramPlot"));
  histogram_->xAxis->setLabel(tr("value"));
  histogram_->yAxis->setLabel(tr("density"));
  histogram_->legend->setVisible(true);
  histogram_->placeLegendOutside();
  const QString series_names[] = {tr("raw"), tr("delta to anchor"), tr("delta to previous")};
  for (int i = 0; i < 3; ++i) {
    QCPGraph* g = histogram_->addGraph();
    g->setName(series_names[i]);
    g->setLineStyle(QCPGraph::lsStepCenter);
  }
  histogram_->setToolTip(help::text(help::Concept::Delta));

  summary_plot_ = new PlotWidget;
  summary_plot_->setObjectName(QStringLiteral("summaryPlot"));
  summary_plot_->xAxis->setLabel(tr("layer"));
  PlotWidget::setIntegerTicks(summary_plot_->xAxis);
  summary_plot_->legend->setVisible(true);
  summary_plot_->placeLegendOutside();
  k_bars_ = new QCPBars(summary_plot_->xAxis, summary_plot_->yAxis);
  v_bars_ = new QCPBars(summary_plot_->xAxis, summary_plot_->yAxis);
  k_bars_->setName(tr("K"));
  v_bars_->setName(tr("V"));
  auto* group = new QCPBarsGroup(summary_plot_);
  for (QCPBars* b : {k_bars_, v_bars_}) {
    b->setBarsGroup(group);
    b->setWidth(0.4);
  }
  metric_ = new QComboBox;
  metric_->setObjectName(QStringLiteral("metricCombo"));
  metric_->addItem(tr("std of raw values"));
  metric_->addItem(tr("entropy of quantized values as cachegen codes them (bits)"));
  metric_->addItem(tr("entropy of anchor/delta symbols as cachegen codes them (bits)"));
  metric_->addItem(tr("entropy at one per-channel step: raw values (bits)"));
  metric_->addItem(tr("entropy at one per-channel step: deltas to anchor (bits)"));
  metric_->addItem(tr("entropy at one per-channel step: deltas to previous (bits)"));
  metric_->addItem(tr("outlier channels"));
  metric_->setItemData(
      CodecRaw,
      tr("Empirical entropy of the symbols cachegen quantizes with the Codec Tuning settings "
         "(its step per token, head or channel, its bins per layer group): what an ideal "
         "per-channel coder would spend. Needs cachegen selected."),
      Qt::ToolTipRole);
  metric_->setItemData(CodecDelta, metric_->itemData(CodecRaw, Qt::ToolTipRole), Qt::ToolTipRole);
  for (int m : {int(EntropyRaw), int(EntropyAnchor), int(EntropyPrev)})
    metric_->setItemData(m,
                         tr("One quantization step per channel (absmax / (bins/2 - 1) over the channel's raw "
                            "values, bins from the spin box above): a property of the data, not what any "
                            "codec codes (cachegen steps per token by default)."),
                         Qt::ToolTipRole);
  metric_->setCurrentIndex(CodecRaw);
  metric_->setToolTip(help::text(help::Concept::Entropy));

  auto recolour = [this] {
    for (int i = 0; i < 3; ++i) histogram_->graph(i)->setPen(QPen(histogram_->seriesColor(i), 1.5));
    for (auto [bars, i] : {std::pair{k_bars_, 0}, std::pair{v_bars_, 1}}) {
      const QColor c = summary_plot_->seriesColor(i);
      bars->setPen(QPen(c.darker(120)));
      bars->setBrush(c);
    }
    histogram_->replot(QCustomPlot::rpQueuedReplot);
    summary_plot_->replot(QCustomPlot::rpQueuedReplot);
  };
  connect(histogram_, &PlotWidget::paletteApplied, this, recolour);
  recolour();

  auto* right = new QWidget;
  auto* right_layout = new QVBoxLayout(right);
  right_layout->setContentsMargins(0, 0, 0, 0);
  right_layout->addWidget(histogram_, 1);
  right_layout->addWidget(metric_);
  right_layout->addWidget(summary_plot_, 1);
  auto* splitter = new QSplitter(Qt::Horizontal);
  splitter->setChildrenCollapsible(false);
  splitter->addWidget(heatmap_);
  splitter->addWidget(right);
  // The heatmap is the widest view (thousands of tokens): it gets the larger share.
  splitter->setStretchFactor(0, 3);
  splitter->setStretchFactor(1, 2);
  splitter->setSizes({600, 400});
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(controls);
  layout->addWidget(summary_);
  layout->addWidget(splitter, 1);

  connect(session_, &Session::cacheChanged, this, &DistributionsPanel::onCacheChanged);
  connect(layer_, &QSpinBox::valueChanged, this, &DistributionsPanel::redraw);
  connect(head_, &QSpinBox::valueChanged, this, &DistributionsPanel::redrawHeatmap);
  connect(kind_, &QComboBox::currentIndexChanged, this, &DistributionsPanel::redraw);
  connect(metric_, &QComboBox::currentIndexChanged, this, &DistributionsPanel::redrawStats);
  connect(entropy_bins_, &QSpinBox::valueChanged, this, &DistributionsPanel::recomputeStats);
  connect(group_size_, &QSpinBox::valueChanged, this, &DistributionsPanel::recomputeStats);
  connect(runner_.get(), &JobRunner::failed, this, [this](const QString&, const QString& message) {
    summary_->setText(tr("Statistics failed: %1").arg(message));
  });
  setEnabled(false);
}

DistributionsPanel::~DistributionsPanel() {
  runner_.reset();
}

void DistributionsPanel::setSelection(int layer, int kind, int head) {
  {
    QSignalBlocker b1(layer_), b2(kind_), b3(head_);
    layer_->setValue(layer);
    kind_->setCurrentIndex(kind);
    head_->setValue(head);
  }
  redraw();
}

void DistributionsPanel::onCacheChanged() {
  const auto cache = session_->cache();
  setEnabled(cache && !cache->empty());
  stats_.reset();
  if (!cache || cache->empty()) return;
  const kv::CacheShape& s = cache->shape();
  {
    QSignalBlocker b1(layer_), b2(head_);
    layer_->setRange(0, s.layers - 1);
    head_->setRange(0, s.kv_heads - 1);
  }
  redrawHeatmap();
  recomputeStats();
}

void DistributionsPanel::recomputeStats() {
  const auto cache = session_->cache();
  if (!cache || cache->empty()) return;
  kv::StatsConfig config;
  config.entropy_bins = entropy_bins_->value();
  config.group_size = group_size_->value();
  config.histogram_bins = 96;
  config.channel_histograms = false;
  runner_->start(tr("Statistics"), [this, cache, config](const ProgressFn& progress) {
    kv::StatsConfig c = config;
    c.progress = progress;
    auto stats = std::make_shared<const kv::CacheStats>(kv::compute_stats(*cache, c));
    return std::function<void()>([this, stats] {
      stats_ = stats;
      redrawStats();
    });
  });
}

void DistributionsPanel::setCodecStages(const std::vector<double>& raw, const std::vector<double>& delta) {
  codec_stages_raw_ = raw;
  codec_stages_delta_ = delta;
  const auto metric = static_cast<Metric>(metric_->currentIndex());
  if (metric == CodecRaw || metric == CodecDelta) redrawStats();
}

void DistributionsPanel::redraw() {
  redrawHeatmap();
  redrawStats();
}

void DistributionsPanel::redrawHeatmap() {
  const auto cache = session_->cache();
  if (!cache || cache->empty()) return;
  const kv::CacheShape& s = cache->shape();
  const int layer = std::clamp(layer_->value(), 0, s.layers - 1);
  const auto kind = kind_->currentIndex() == 0 ? kv::Kind::Key : kv::Kind::Value;
  const int head = std::clamp(head_->value(), 0, s.kv_heads - 1);
  auto* data = map_->data();
  data->setSize(s.tokens, s.head_dim);
  data->setRange(QCPRange(0, s.tokens - 1), QCPRange(0, s.head_dim - 1));
  float absmax = 0;
  for (int t = 0; t < s.tokens; ++t) {
    for (int d = 0; d < s.head_dim; ++d) {
      const float v = cache->at(layer, kind, head, t, d);
      data->setCell(t, d, v);
      if (std::isfinite(v)) absmax = std::max(absmax, std::abs(v));
    }
  }
  // Symmetric range so zero is the neutral colour of the diverging gradient.
  const double range = std::max(double(absmax), 1e-6);
  scale_->setDataRange(QCPRange(-range, range));
  summary_->setText(tr("%1 — layer %2 %3, KV head %4: %5 tokens x %6 dims, |max| %7")
                        .arg(session_->cacheSource())
                        .arg(layer)
                        .arg(kind == kv::Kind::Key ? tr("keys") : tr("values"))
                        .arg(head)
                        .arg(s.tokens)
                        .arg(s.head_dim)
                        .arg(double(absmax), 0, 'g', 4));
  heatmap_->refresh();
  emit redrawn();
}

void DistributionsPanel::redrawStats() {
  if (!stats_) return;
  const kv::CacheShape& s = stats_->shape;
  const int layer = std::clamp(layer_->value(), 0, s.layers - 1);
  const auto kind = kind_->currentIndex() == 0 ? kv::Kind::Key : kv::Kind::Value;
  const kv::TensorStats& t = stats_->tensor(layer, kind);
  for (int i = 0; i < 3; ++i) {
    const kv::Histogram& h = t.histograms[static_cast<std::size_t>(i)];
    const double total = double(t.moments[static_cast<std::size_t>(i)].count);
    const double width = h.bin_width();
    QVector<double> x, y;
    for (std::size_t b = 0; b < h.counts.size(); ++b) {
      x << h.bin_center(b);
      y << (total > 0 && width > 0 ? double(h.counts[b]) / (total * width) : 0.0);
    }
    histogram_->graph(i)->setData(x, y, true);
  }
  histogram_->refresh();

  QVector<double> layers, kv_values[2];
  const auto metric = static_cast<Metric>(metric_->currentIndex());
  for (int l = 0; l < s.layers; ++l) {
    layers << l;
    for (int k = 0; k < 2; ++k) {
      const kv::TensorStats& ts = stats_->tensor(l, k == 0 ? kv::Kind::Key : kv::Kind::Value);
      double v = 0;
      switch (metric) {
        case StdRaw:
          v = ts.moments[0].std;
          break;
        case CodecRaw:
        case CodecDelta: {
          const auto& per_layer = metric == CodecRaw ? codec_stages_raw_ : codec_stages_delta_;
          const std::size_t i = std::size_t(l) * 2 + std::size_t(k);
          v = i < per_layer.size() ? per_layer[i] : 0.0;
          break;
        }
        case EntropyRaw:
          v = ts.entropy_bits[0];
          break;
        case EntropyAnchor:
          v = ts.entropy_bits[1];
          break;
        case EntropyPrev:
          v = ts.entropy_bits[2];
          break;
        case Outliers:
          v = double(ts.outlier_channels.size());
          break;
      }
      kv_values[k] << v;
    }
  }
  k_bars_->setData(layers, kv_values[0], true);
  v_bars_->setData(layers, kv_values[1], true);
  QString axis = metric_->currentText();
  if ((metric == CodecRaw || metric == CodecDelta) && codec_stages_raw_.empty())
    axis = tr("select cachegen in Codec Tuning for the codec's entropy");
  else if (metric >= EntropyRaw && metric <= EntropyPrev)
    axis = tr("entropy at a per-channel step, %1 bins (bits)").arg(stats_->entropy_bins);
  summary_plot_->yAxis->setLabel(axis);
  summary_plot_->refresh();
  summary_->setText(
      summary_->text().section(QLatin1Char('\n'), 0, 0) +
      tr("\nLayer %1 %2: std %3; at one per-channel step of %7 bins, entropy raw %4 / anchor-delta %5 / "
         "prev-delta %6 bits; %8 outlier channels; adjacent-token correlation %9")
          .arg(layer)
          .arg(kind == kv::Kind::Key ? tr("keys") : tr("values"))
          .arg(t.moments[0].std, 0, 'g', 3)
          .arg(t.entropy_bits[0], 0, 'f', 2)
          .arg(t.entropy_bits[1], 0, 'f', 2)
          .arg(t.entropy_bits[2], 0, 'f', 2)
          .arg(stats_->entropy_bins)
          .arg(t.outlier_channels.size())
          .arg(t.adjacent_correlation, 0, 'f', 3));
  emit redrawn();
}

}  // namespace kvscope::gui
