// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline_panel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QTextBrowser>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "kvscope/common/error.h"
#include "labeled_control.h"
#include "on_screen.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

namespace {

// One row per stage: its label and what it means (shown as the row's tooltip).
struct StageRow {
  const char* label;
  const char* tip;
};
const StageRow kRows[] = {
    {"1 original value", "The value the model wrote into the KV cache (fp16 precision)."},
    {"2 bin step",
     "absmax / M rounded up to fp16, so Q fits in [-M, M]; the absmax is over the token's values in the "
     "layer "
     "(scale=token), in its KV head (head), or over the channel's chunk (channel)."},
    {"2 quantized Q", "Q = round(value / step), clamped to [-M, M]: one of the layer group's bins."},
    {"3 anchor token", "Every group_size-th token of a chunk is an anchor; the others are coded against it."},
    {"3 anchor Q", "The anchor token's Q in this channel."},
    {"3 prediction",
     "Integer deltas: the anchor's Q re-expressed in this token's step: round(anchor Q x anchor step / "
     "step); the anchor Q itself when the steps are equal. Float deltas: the anchor's decoded value."},
    {"3 delta",
     "Integer deltas: Q - prediction, small because neighbouring tokens are similar. Float deltas: Q of "
     "the change (value - decoded anchor) on its own step. 0 for an anchor."},
    {"4 coded symbol",
     "What the range coder codes: Q + M for an anchor (anchor_bins' M with float deltas), delta + 2M for "
     "an integer delta, Q + M for a float delta."},
    {"4 probability p",
     "The symbol's share of the channel's 16-bit frequency table (the CDF the coder uses)."},
    {"4 bits = -log2 p",
     "What the range coder spends on this symbol: frequent symbols cost less than a bit."},
    {"5 reconstructed",
     "What decode() returns: Q x step, or with centroid reconstruction (the reconstruction parameter) Q's "
     "level x step, the level moved up to a sixth of a step toward the likelier neighbouring bin."},
    {"5 error", "reconstructed - original: at most half a step (two thirds with centroid reconstruction)."},
};
constexpr int kRowCount = int(sizeof(kRows) / sizeof(kRows[0]));

QString num(double v, int prec = 4) {
  return QString::number(v, 'g', prec);
}

}  // namespace

PipelinePanel::PipelinePanel(Session* session, std::function<codec::CodecConfig()> config, QWidget* parent)
    : QWidget(parent), session_(session), config_(std::move(config)) {
  auto* controls = new QHBoxLayout;
  auto add = [&](const QString& label, QWidget* w, const QString& tip) {
    addLabeledControl(controls, label, w, tip);
  };
  layer_ = new QSpinBox;
  layer_->setObjectName(QStringLiteral("pipelineLayer"));
  add(tr("Layer"), layer_, tr("Transformer layer to trace"));
  kind_ = new QComboBox;
  kind_->addItems({tr("K"), tr("V")});
  add(tr("K|V"), kind_, tr("Keys or values"));
  token_ = new QSpinBox;
  token_->setObjectName(QStringLiteral("pipelineToken"));
  token_->setValue(1);  // a delta token by default: it shows every stage
  add(tr("Token"), token_, tr("Token whose values are traced"));
  first_channel_ = new QSpinBox;
  add(tr("Channels from"), first_channel_, tr("First channel (kv_head x head_dim + dim)"));
  channel_count_ = new QSpinBox;
  channel_count_->setRange(1, 32);
  channel_count_->setValue(8);
  add(tr("count"), channel_count_, tr("How many channels to show"));
  controls->addStretch(1);

  header_ = new QLabel;
  header_->setWordWrap(true);
  header_->setTextInteractionFlags(Qt::TextSelectableByMouse);

  table_ = new QTableWidget(kRowCount, 0);
  table_->setObjectName(QStringLiteral("pipelineTable"));
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  for (int r = 0; r < kRowCount; ++r) {
    auto* item = new QTableWidgetItem(tr(kRows[r].label));
    item->setToolTip(tr(kRows[r].tip));
    table_->setVerticalHeaderItem(r, item);
  }
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);

  explain_ = new QTextBrowser;
  explain_->setObjectName(QStringLiteral("pipelineExplanation"));

  model_plot_ = new PlotWidget;
  model_plot_->setObjectName(QStringLiteral("pipelineModelPlot"));
  model_plot_->setMinimumHeight(160);
  model_bars_ = new QCPBars(model_plot_->xAxis, model_plot_->yAxis);
  model_bars_->setName(tr("coder probability"));
  coded_bar_ = new QCPBars(model_plot_->xAxis, model_plot_->yAxis);
  coded_bar_->setName(tr("this token's symbol"));
  model_plot_->yAxis->setLabel(tr("probability p"));
  model_plot_->legend->setVisible(true);
  auto recolour = [this] {
    model_bars_->setBrush(model_plot_->seriesColor(0));
    model_bars_->setPen(Qt::NoPen);
    coded_bar_->setBrush(model_plot_->seriesColor(1));
    coded_bar_->setPen(Qt::NoPen);
    model_plot_->replot(QCustomPlot::rpQueuedReplot);
  };
  recolour();
  connect(model_plot_, &PlotWidget::paletteApplied, this, recolour);

  auto* lower = new QSplitter(Qt::Horizontal);
  lower->addWidget(explain_);
  lower->addWidget(model_plot_);
  auto* split = new QSplitter(Qt::Vertical);
  split->addWidget(table_);
  split->addWidget(lower);

  auto* layout = new QVBoxLayout(this);
  layout->addLayout(controls);
  layout->addWidget(header_);
  layout->addWidget(split, 1);

  for (QSpinBox* s : {layer_, token_, first_channel_, channel_count_})
    connect(s, qOverload<int>(&QSpinBox::valueChanged), this, [this] {
      if (!updating_) refresh();
    });
  connect(kind_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] {
    if (!updating_) refresh();
  });
  when_shown_ = new WhenShown(this, [this] { refresh(); });
  connect(session_, &Session::cacheChanged, this, &PipelinePanel::onCacheChanged);
  onCacheChanged();
}

void PipelinePanel::requestRefresh() {
  when_shown_->request();
}

void PipelinePanel::onCacheChanged() {
  const auto cache = session_->cache();
  updating_ = true;
  if (cache) {
    const auto& sh = cache->shape();
    layer_->setRange(0, std::max(0, sh.layers - 1));
    token_->setRange(0, std::max(0, sh.tokens - 1));
    first_channel_->setRange(0, std::max(0, sh.channels() - 1));
    channel_count_->setRange(1, std::clamp(sh.channels(), 1, 32));
  }
  updating_ = false;
  requestRefresh();
}

void PipelinePanel::setSelection(int layer, int kind, int token, int first_channel, int channel_count) {
  updating_ = true;
  layer_->setValue(layer);
  kind_->setCurrentIndex(kind ? 1 : 0);
  token_->setValue(token);
  first_channel_->setValue(first_channel);
  channel_count_->setValue(channel_count);
  updating_ = false;
  refresh();
}

void PipelinePanel::refresh() {
  trace_ = {};
  table_->setColumnCount(0);
  model_bars_->data()->clear();
  coded_bar_->data()->clear();
  const auto cache = session_->cache();
  if (!cache) {
    header_->setText(tr("Prefill a context to trace a token through the codec."));
    explain_->clear();
    model_plot_->refresh();
    emit traced();
    return;
  }
  const codec::CodecConfig cfg = config_ ? config_() : codec::CodecConfig{};
  const bool is_cachegen = cfg.codec == "cachegen";
  const int C = cache->shape().channels();
  const int first = first_channel_->value();
  const int count = std::min(channel_count_->value(), C - first);
  try {
    trace_ = codec::trace_pipeline(*cache, is_cachegen ? cfg.params : codec::ParamSet{}, layer_->value(),
                                   kind_->currentIndex() ? kv::Kind::Value : kv::Kind::Key, token_->value(),
                                   first, std::max(1, count));
  } catch (const Error& e) {
    header_->setText(tr("Cannot trace: %1").arg(QString::fromUtf8(e.what())));
    explain_->clear();
    model_plot_->refresh();
    emit traced();
    return;
  }
  const auto& t = trace_;
  const bool float_mode = t.delta_mode == "float";
  QString head = tr("cachegen, layer %1 %2, token %3: %4 bins (Q in [-%5, %5]), anchor groups of %6 tokens, "
                    "chunk of tokens %7-%8, steps per %9, symbol tables %10.")
                     .arg(t.layer)
                     .arg(t.kind == kv::Kind::Key ? tr("keys") : tr("values"))
                     .arg(t.token)
                     .arg(t.bins)
                     .arg(t.M)
                     .arg(t.group_size)
                     .arg(t.chunk_begin)
                     .arg(t.chunk_begin + t.chunk_tokens - 1)
                     .arg(t.scale == "token"  ? tr("token")
                          : t.scale == "head" ? tr("token and KV head")
                                              : tr("channel and chunk"))
                     .arg(t.from_profile ? tr("from the calibration profile") : tr("built from this cache"));
  head += float_mode ? tr(" Float deltas (the paper's change-based coding): anchors on %1 levels, other "
                          "tokens code their change from the decoded anchor.")
                           .arg(2 * t.anchor_M + 1)
                     : tr(" Integer deltas (lossless prediction from the anchor's Q).");
  if (t.sinks > 0)
    head += tr(" The first %1 token(s) of the cache are attention sinks, stored exactly.").arg(t.sinks);
  if (t.pre_rope)
    head +=
        tr(" Keys are coded before RoPE (key_space=pre_rope): the values below are the keys with RoPE "
           "removed; the decoder rotates them back at each token's position.");
  if (!is_cachegen)
    head.prepend(tr("The current codec is '%1'; this view traces cachegen with its default settings. ")
                     .arg(QString::fromStdString(cfg.codec)));
  header_->setText(head);

  table_->setColumnCount(int(t.elements.size()));
  double bits = 0, max_err = 0;
  for (int col = 0; col < int(t.elements.size()); ++col) {
    const auto& e = t.elements[col];
    table_->setHorizontalHeaderItem(col, new QTableWidgetItem(tr("ch %1").arg(e.channel)));
    if (e.sink) {
      const QString dash = tr("— (sink)");
      const QString cells[kRowCount] = {num(e.original),
                                        dash,
                                        dash,
                                        dash,
                                        dash,
                                        dash,
                                        dash,
                                        tr("f16 value"),
                                        dash,
                                        QStringLiteral("16"),
                                        num(e.reconstructed),
                                        num(e.error, 3)};
      for (int r = 0; r < kRowCount; ++r) table_->setItem(r, col, new QTableWidgetItem(cells[r]));
      bits += e.bits;
      max_err = std::max(max_err, double(std::fabs(e.error)));
      continue;
    }
    const QString cells[kRowCount] = {
        num(e.original),
        num(e.step),
        QString::number(e.q),
        e.raw ? tr("%1 (raw channel)").arg(e.anchor_token) : QString::number(e.anchor_token),
        QString::number(e.anchor_q),
        e.is_anchor  ? tr("— (anchor)")
        : float_mode ? num(e.anchor_reconstructed)
                     : QString::number(e.prediction),
        e.is_anchor ? tr("— (anchor)") : QString::number(e.delta),
        tr("%1 (%2)").arg(e.symbol).arg(e.is_anchor ? tr("anchor") : tr("delta")),
        num(double(e.freq) / 65536.0),
        num(e.bits, 3),
        num(e.reconstructed),
        num(e.error, 3),
    };
    for (int r = 0; r < kRowCount; ++r) table_->setItem(r, col, new QTableWidgetItem(cells[r]));
    bits += e.bits;
    max_err = std::max(max_err, double(std::fabs(e.error)));
  }

  const auto& e0 = t.elements.front();
  if (e0.sink) {
    model_plot_->xAxis->setLabel(tr("no symbol model: a sink token is stored as f16"));
    model_plot_->refresh();
    explain_->setHtml(
        tr("<p><b>Attention sink.</b> Token %1 is one of the first %2 token(s) of the cache. Later tokens "
           "put "
           "a large share of their attention on these tokens, so any error in their keys or values is "
           "amplified; cachegen stores them exactly (fp16, 16 bits per value) instead of quantizing them. "
           "The Attention view shows how much attention each token draws.</p>")
            .arg(t.token)
            .arg(t.sinks));
    emit traced();
    return;
  }
  // The coder's model of the first traced channel, on the value axis (Q for
  // anchors, delta for deltas), with this token's symbol highlighted.
  const int offset = e0.is_anchor ? (float_mode ? t.anchor_M : t.M) : (float_mode ? t.M : 2 * t.M);
  QVector<double> keys, probs;
  for (int s = 0; s + 1 < int(e0.cdf.size()); ++s) {
    keys.push_back(s - offset);
    probs.push_back(double(e0.cdf[s + 1] - e0.cdf[s]) / 65536.0);
  }
  model_bars_->setData(keys, probs, true);
  coded_bar_->setData({double(e0.symbol - offset)}, {double(e0.freq) / 65536.0}, true);
  model_plot_->xAxis->setLabel(e0.is_anchor ? tr("Q of channel %1 (anchor model)").arg(e0.channel)
                                            : tr("delta of channel %1 (delta model)").arg(e0.channel));
  model_plot_->refresh();

  const int n = int(t.elements.size());
  QString html;
  html += tr("<p><b>1. Original.</b> Channel %1 holds %2 in fp16: 16 bits per value, %3 bits for these %4 "
             "values.</p>")
              .arg(e0.channel)
              .arg(num(e0.original))
              .arg(16 * n)
              .arg(n);
  const QString over = t.scale == "token"  ? tr("this token's largest |value| in the layer")
                       : t.scale == "head" ? tr("this token's largest |value| in its KV head")
                                           : tr("the chunk's largest |value| in this channel");
  html += tr("<p><b>2. Quantize.</b> The step is %6 over M = %1, "
             "here %2; Q = round(%3 / %2) = %4, one of %5 bins.</p>")
              .arg(t.M)
              .arg(num(e0.step))
              .arg(num(e0.original))
              .arg(e0.q)
              .arg(t.bins)
              .arg(over);
  if (float_mode && !e0.is_anchor)
    html +=
        tr("<p><b>3. Anchor / delta (float).</b> The anchor is token %1, decoded as %2. This token codes "
           "its change from it: %3 - %2, quantized on its own step %4 over M = %5: Q = %6. Unlike integer "
           "deltas this changes the values (the error adds to the anchor's).</p>")
            .arg(e0.anchor_token)
            .arg(num(e0.anchor_reconstructed))
            .arg(num(e0.original))
            .arg(num(e0.step))
            .arg(t.M)
            .arg(e0.q);
  else if (e0.raw)
    html +=
        tr("<p><b>3. Anchor / delta.</b> For this channel deltas would cost more than the quantized "
           "values themselves, so the encoder codes every token as an anchor (raw).</p>");
  else if (e0.is_anchor)
    html += tr("<p><b>3. Anchor / delta.</b> Token %1 is an anchor (every %2th token of the chunk): its Q is "
               "coded on its own. The next %3 tokens are coded as deltas to it.</p>")
                .arg(t.token)
                .arg(t.group_size)
                .arg(t.group_size - 1);
  else
    html +=
        tr("<p><b>3. Anchor / delta.</b> The anchor is token %1 with Q = %2 at step %5; in this token's step "
           "that is the prediction %6, so this token codes the delta %3 - %6 = %4: neighbouring tokens are "
           "alike, so deltas cluster near 0.</p>")
            .arg(e0.anchor_token)
            .arg(e0.anchor_q)
            .arg(e0.q)
            .arg(e0.delta)
            .arg(num(e0.anchor_step))
            .arg(e0.prediction);
  html += tr("<p><b>4. Entropy code.</b> The range coder codes symbol %1 with the channel's frequency table "
             "(the CDF, right): p = %2/65536 = %3, so it costs -log2 p = %4 bits. The %5 traced values cost "
             "%6 bits in all, %7 bits each, against 16 in fp16.</p>")
              .arg(e0.symbol)
              .arg(e0.freq)
              .arg(num(double(e0.freq) / 65536.0))
              .arg(num(e0.bits, 3))
              .arg(n)
              .arg(num(bits, 4))
              .arg(num(bits / n, 3));
  if (float_mode && !e0.is_anchor)
    html += tr("<p><b>5. Decode.</b> The decoder reads Q back and adds Q x step to the decoded anchor: %1 + "
               "%2 x %3 = %4, error %5. The largest error here is %6.</p>")
                .arg(num(e0.anchor_reconstructed))
                .arg(e0.q)
                .arg(num(e0.step))
                .arg(num(e0.reconstructed))
                .arg(num(e0.error, 3))
                .arg(num(max_err, 3));
  else if (t.reconstruction > 0 && !float_mode)
    html += tr("<p><b>5. Decode.</b> The decoder reads the symbol back and adds the prediction: Q = %1. "
               "Values in a bin crowd toward its likelier neighbour, so the decoder moves Q by %2 of the "
               "offset the channel's table implies (centroid reconstruction) to level %3, and multiplies by "
               "the step: %3 x %4 = %5, error %6. The largest error here is %7 (at most two thirds of a "
               "step).</p>")
                .arg(e0.q)
                .arg(num(t.reconstruction, 3))
                .arg(num(e0.level, 4))
                .arg(num(e0.step))
                .arg(num(e0.reconstructed))
                .arg(num(e0.error, 3))
                .arg(num(max_err, 3));
  else
    html += tr("<p><b>5. Decode.</b> The decoder reads the symbol back, adds the prediction, and multiplies "
               "by the "
               "step: %1 x %2 = %3, error %4. The largest error here is %5 (at most half a step).</p>")
                .arg(e0.q)
                .arg(num(e0.step))
                .arg(num(e0.reconstructed))
                .arg(num(e0.error, 3))
                .arg(num(max_err, 3));
  explain_->setHtml(html);
  emit traced();
}

QString PipelinePanel::explanation() const {
  return explain_->toPlainText();
}

}  // namespace kvscope::gui
