#include "distributions_panel.h"

#include <QComboBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "help_text.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

DistributionsPanel::DistributionsPanel(Session* session, QWidget* parent)
    : QWidget(parent), session_(session) {
  auto* controls = new QHBoxLayout;
  layer_ = new QSpinBox;
  layer_->setPrefix(tr("layer "));
  layer_->setToolTip(tr("Transformer layer whose cache is shown."));
  kind_ = new QComboBox;
  kind_->addItem(tr("K (keys)"));
  kind_->addItem(tr("V (values)"));
  kind_->setToolTip(help::text(help::Concept::KeysValues));
  head_ = new QSpinBox;
  head_->setPrefix(tr("KV head "));
  head_->setToolTip(tr("Key/value head: a layer has kv_heads x head_dim channels."));
  controls->addWidget(layer_);
  controls->addWidget(kind_);
  controls->addWidget(head_);
  controls->addStretch();

  summary_ = new QLabel(tr("No cache yet: load a model and prefill a context."));
  summary_->setWordWrap(true);

  heatmap_ = new PlotWidget;
  heatmap_->setObjectName(QStringLiteral("heatmapPlot"));
  heatmap_->xAxis->setLabel(tr("token"));
  heatmap_->yAxis->setLabel(tr("channel (dim within head)"));
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
  heatmap_->setToolTip(help::text(help::Concept::Heatmap));
  heatmap_->applyPalette();

  auto* layout = new QVBoxLayout(this);
  layout->addLayout(controls);
  layout->addWidget(summary_);
  layout->addWidget(heatmap_, 1);

  connect(session_, &Session::cacheChanged, this, &DistributionsPanel::onCacheChanged);
  for (QSpinBox* s : {layer_, head_}) connect(s, &QSpinBox::valueChanged, this, &DistributionsPanel::redraw);
  connect(kind_, &QComboBox::currentIndexChanged, this, &DistributionsPanel::redraw);
  setEnabled(false);
}

void DistributionsPanel::setSelection(int layer, int kind, int head) {
  QSignalBlocker b1(layer_), b2(kind_), b3(head_);
  layer_->setValue(layer);
  kind_->setCurrentIndex(kind);
  head_->setValue(head);
  redraw();
}

void DistributionsPanel::onCacheChanged() {
  const auto cache = session_->cache();
  setEnabled(cache && !cache->empty());
  if (!cache || cache->empty()) return;
  const kv::CacheShape& s = cache->shape();
  QSignalBlocker b1(layer_), b2(head_);
  layer_->setRange(0, s.layers - 1);
  head_->setRange(0, s.kv_heads - 1);
  redraw();
}

void DistributionsPanel::redraw() {
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
  scale_->setDataRange(QCPRange(-std::max(absmax, 1e-6f), std::max(absmax, 1e-6f)));
  heatmap_->plotLayout()->setRowSpacing(0);
  summary_->setText(tr("%1 — layer %2, %3, KV head %4: %5 tokens x %6 dims, |max| %7")
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

}  // namespace kvscope::gui
