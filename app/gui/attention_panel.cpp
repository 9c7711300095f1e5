// SPDX-License-Identifier: GPL-3.0-or-later
#include "attention_panel.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QVBoxLayout>
#include <algorithm>

#include "job_runner.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

namespace {
constexpr int kTokensShown = 32;  // the early tokens, where sinks live

int sinksOf(const codec::CodecConfig& c) {
  const auto it = c.params.find("sinks");
  if (c.codec != "cachegen") return 0;
  if (it == c.params.end()) {
    for (const auto& spec : codec::find_codec("cachegen").params())
      if (spec.name == "sinks") return std::stoi(spec.default_value);
    return 0;
  }
  try {
    return std::stoi(it->second);
  } catch (...) {
    return 0;
  }
}
}  // namespace

AttentionPanel::AttentionPanel(Session* session, std::function<codec::CodecConfig()> current_config,
                               QWidget* parent)
    : QWidget(parent),
      session_(session),
      current_config_(std::move(current_config)),
      runner_(std::make_unique<JobRunner>(QStringLiteral("attention"))) {
  measure_ = new QPushButton(tr("Measure attention"));
  measure_->setObjectName(QStringLiteral("measureAttentionButton"));
  measure_->setToolTip(
      tr("Feed the last tokens of the context after the cache of the tokens before them and "
         "record how much of their attention each cached token draws (runs the model)."));
  queries_ = new QSpinBox;
  queries_->setRange(1, 512);
  queries_->setValue(64);
  queries_->setToolTip(tr("How many of the context's last tokens act as queries"));
  status_ =
      new QLabel(tr("Measures where the model looks: the reason cachegen keeps attention sinks exact."));
  status_->setWordWrap(true);

  token_plot_ = new PlotWidget;
  token_plot_->setObjectName(QStringLiteral("attentionTokenPlot"));
  token_plot_->xAxis->setLabel(tr("token"));
  token_plot_->yAxis->setLabel(tr("share of attention (mean over layers)"));
  token_plot_->yAxis->setScaleType(QCPAxis::stLogarithmic);
  token_plot_->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
  PlotWidget::setIntegerTicks(token_plot_->xAxis);
  token_bars_ = new QCPBars(token_plot_->xAxis, token_plot_->yAxis);
  token_bars_->setName(tr("attention drawn"));

  layer_plot_ = new PlotWidget;
  layer_plot_->setObjectName(QStringLiteral("attentionLayerPlot"));
  layer_plot_->xAxis->setLabel(tr("layer"));
  layer_plot_->yAxis->setLabel(tr("share drawn by the sinks"));
  PlotWidget::setIntegerTicks(layer_plot_->xAxis);
  sink_share_ = layer_plot_->addGraph();
  sink_share_->setName(tr("first N tokens"));
  auto recolour = [this] {
    token_bars_->setBrush(token_plot_->seriesColor(0));
    token_bars_->setPen(Qt::NoPen);
    sink_share_->setPen(QPen(layer_plot_->seriesColor(1), 2));
    sink_share_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, layer_plot_->seriesColor(1), 5));
    token_plot_->replot(QCustomPlot::rpQueuedReplot);
    layer_plot_->replot(QCustomPlot::rpQueuedReplot);
  };
  recolour();
  connect(token_plot_, &PlotWidget::paletteApplied, this, recolour);
  connect(layer_plot_, &PlotWidget::paletteApplied, this, recolour);

  auto* controls = new QHBoxLayout;
  controls->addWidget(measure_);
  controls->addWidget(new QLabel(tr("query tokens")));
  controls->addWidget(queries_);
  controls->addStretch(1);
  auto* plots = new QSplitter(Qt::Horizontal);
  plots->addWidget(token_plot_);
  plots->addWidget(layer_plot_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(controls);
  layout->addWidget(status_);
  layout->addWidget(plots, 1);

  connect(measure_, &QPushButton::clicked, this, &AttentionPanel::measure);
  connect(runner_.get(), &JobRunner::failed, this, [this](const QString&, const QString& message) {
    status_->setText(tr("Measurement failed: %1").arg(message));
  });
  connect(runner_.get(), &JobRunner::busyChanged, this, [this](bool busy) { measure_->setEnabled(!busy); });
}

AttentionPanel::~AttentionPanel() {
  runner_.reset();
}

void AttentionPanel::measure() {
  const auto model = session_->model();
  const auto cache = session_->cache();
  if (!model || !cache) {
    status_->setText(tr("Load a model and prefill a context first."));
    return;
  }
  const int T = cache->shape().tokens;
  const int q = std::min(queries_->value(), T - 1);
  if (q < 1 || int(cache->info.token_ids.size()) != T) {
    status_->setText(tr("The cache needs its token ids and at least two tokens (prefill a context)."));
    return;
  }
  status_->setText(tr("Measuring attention of %1 query tokens over %2 cached tokens...").arg(q).arg(T - q));
  runner_->start(tr("Measuring attention"), [this, model, cache, T, q](const ProgressFn&) {
    const kv::KVCache past = cache->slice_tokens(0, T - q);
    const std::vector<std::int32_t> queries(cache->info.token_ids.end() - q, cache->info.token_ids.end());
    auto w = std::make_shared<std::vector<float>>(model->attention_to_cache(past, queries));
    const int layers = cache->shape().layers, tokens = T - q;
    return std::function<void()>([this, w, layers, tokens] {
      weights_ = std::move(*w);
      layers_ = layers;
      tokens_ = tokens;
      redraw();
      emit measured();
    });
  });
}

QString AttentionPanel::summary() const {
  if (weights_.empty() || layers_ == 0) return {};
  double first = 0, best = 0;
  int best_layer = 0;
  for (int l = 0; l < layers_; ++l) {
    const double w = weights_[std::size_t(l) * tokens_];
    first += w / layers_;
    if (w > best) best = w, best_layer = l;
  }
  double rest = 0;
  for (int l = 0; l < layers_; ++l)
    for (int t = 1; t < std::min(tokens_, 4); ++t) rest += weights_[std::size_t(l) * tokens_ + t] / layers_;
  return tr("Token 0 draws %1% of the attention on average over the layers (%2% in layer %3); tokens 1-3 "
            "together %4%.")
      .arg(100 * first, 0, 'f', 1)
      .arg(100 * best, 0, 'f', 1)
      .arg(best_layer)
      .arg(100 * rest, 0, 'f', 2);
}

void AttentionPanel::redraw() {
  if (weights_.empty()) return;
  const int shown = std::min(tokens_, kTokensShown);
  QVector<double> x, y;
  for (int t = 0; t < shown; ++t) {
    double m = 0;
    for (int l = 0; l < layers_; ++l) m += weights_[std::size_t(l) * tokens_ + t] / layers_;
    x << t;
    y << std::max(m, 1e-6);  // a log axis cannot show 0
  }
  token_bars_->setData(x, y, true);
  token_plot_->refresh(true);
  const int sinks = current_config_ ? sinksOf(current_config_()) : 0;
  const int n = std::max(1, sinks);
  QVector<double> lx, ly;
  for (int l = 0; l < layers_; ++l) {
    double s = 0;
    for (int t = 0; t < std::min(n, tokens_); ++t) s += weights_[std::size_t(l) * tokens_ + t];
    lx << l;
    ly << s;
  }
  sink_share_->setData(lx, ly, true);
  sink_share_->setName(
      tr("first %1 token(s)%2").arg(n).arg(sinks > 0 ? tr(" (the codec's sinks)") : QString()));
  layer_plot_->legend->setVisible(true);
  layer_plot_->refresh(true);
  status_->setText(summary());
}

}  // namespace kvscope::gui
