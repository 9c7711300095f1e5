// SPDX-License-Identifier: GPL-3.0-or-later
#include "codec_panel.h"

#include <QComboBox>
#include <QFrame>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QScrollArea>
#include <QSplitter>
#include <QTabWidget>
#include <QVBoxLayout>
#include <cmath>

#include "help_text.h"
#include "job_runner.h"
#include "kvscope/codec/stage_analysis.h"
#include "param_editor.h"
#include "plot_widget.h"
#include "quality_strip.h"
#include "retune_estimate.h"
#include "session.h"
#if KVSCOPE_GUI_HAVE_EVAL
#include "quality_service.h"
#endif

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}
#if KVSCOPE_GUI_HAVE_EVAL
constexpr int kScoredTokensHint = QualityService::kScoredTokens;
#else
constexpr int kScoredTokensHint = 0;
#endif
// A label that keeps `lines` lines of height whatever its text, so the plots
// below it never move when the text gets shorter or longer.
void fixLines(QLabel* label, int lines) {
  label->setFixedHeight(label->fontMetrics().lineSpacing() * lines + 4);
  label->setAlignment(Qt::AlignTop | Qt::AlignLeft);
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
  layer_plot_->placeLegendOutside();
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

  // Fixed regions, so switching codec never moves the plots: the parameter
  // list scrolls inside its own area, whatever its length.
  quality_ = new QLabel;
  quality_->setObjectName(QStringLiteral("qualityReadout"));
  quality_->setWordWrap(true);
  quality_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  quality_->setToolTip(
      tr("How the model continues this context from the decoded cache, against the original fp16 cache: "
         "mean KL of the next-token distributions, top-1 agreement and perplexity change over the last "
         "%1 tokens, with 95% bootstrap intervals over those tokens. Recomputed in the background after "
         "every change.")
          .arg(kScoredTokensHint));
  strip_ = new QualityStrip;
  strip_->setObjectName(QStringLiteral("qualityStrip"));
  auto* params_area = new QScrollArea;
  params_area->setWidget(params_);
  params_area->setWidgetResizable(true);
  params_area->setFrameShape(QFrame::NoFrame);
  params_area->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  params_area->setMinimumHeight(120);
  codec_help_->setMaximumHeight(codec_help_->fontMetrics().lineSpacing() * 3 + 4);
  codec_help_->setAlignment(Qt::AlignTop | Qt::AlignLeft);

  auto* top = new QWidget;
  auto* top_layout = new QVBoxLayout(top);
  top_layout->setContentsMargins(0, 0, 0, 0);
  auto* picker = new QHBoxLayout;
  picker->addWidget(new QLabel(tr("Codec:")));
  picker->addWidget(codec_combo_, 1);
  top_layout->addLayout(picker);
  top_layout->addWidget(codec_help_);
  top_layout->addWidget(params_area, 1);
  auto* readouts = new QWidget;
  auto* readout_layout = new QVBoxLayout(readouts);
  readout_layout->setContentsMargins(0, 0, 0, 0);
  readout_layout->addWidget(readout_);
  readout_layout->addWidget(quality_);
  readout_layout->addWidget(strip_);
  readout_layout->addWidget(timing_);
  readout_layout->addWidget(progress_);
  readouts->setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Fixed);
  auto* plots = new QTabWidget;
  plots->setObjectName(QStringLiteral("codecPlots"));
  plots->addTab(waterfall_, tr("Bits by stage"));
  plots->addTab(layer_plot_, tr("Size per layer"));
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->setChildrenCollapsible(false);
  splitter->addWidget(top);
  splitter->addWidget(readouts);
  splitter->addWidget(plots);
  // The parameter area keeps its height whatever the codec (it scrolls); the
  // plots take what is left.
  splitter->setStretchFactor(0, 0);
  splitter->setStretchFactor(1, 0);
  splitter->setStretchFactor(2, 1);
  splitter->setSizes({fontMetrics().lineSpacing() * 23, readouts->sizeHint().height(), 400});
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addWidget(splitter);
  fixLines(readout_, 2);
  fixLines(quality_, 3);
  fixLines(timing_, 1);
  progress_->setFixedHeight(6);
  progress_->setRange(0, 1000);
  quality_->setText(tr("Quality: measured after the first encode."));

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
  connect(runner_.get(), &JobRunner::busyChanged, this, [this](bool busy) {
    if (!busy) progress_->setValue(0);
  });
  connect(runner_.get(), &JobRunner::failed, this, [this](const QString&, const QString& message) {
    readout_->setText(tr("Encode failed: %1").arg(message));
    emit errorOccurred(message);
  });
  const int cachegen = codec_combo_->findText(QStringLiteral("cachegen"));
  if (cachegen >= 0) codec_combo_->setCurrentIndex(cachegen);
  rebuildControls();
}

CodecPanel::~CodecPanel() = default;

QString CodecPanel::qualityReadout() const {
  return quality_->text();
}

#if KVSCOPE_GUI_HAVE_EVAL
void CodecPanel::setQualityService(QualityService* service) {
  quality_service_ = service;
  connect(service, &QualityService::liveStarted, this, [this] {
    strip_->setStale(true);
    if (!quality_->text().startsWith(QStringLiteral("<b>KL")))
      quality_->setText(tr("Quality: measuring on the current context..."));
    else
      quality_->setToolTip(tr("Measuring the new settings; the numbers shown are for the previous ones."));
  });
  connect(service, &QualityService::liveResult, this, [this](const eval::QualityResult& r) {
    const auto cache = session_->cache();
    if (QualityService::complete(config(), cache ? &cache->shape() : nullptr).params != r.config.params ||
        r.config.codec != config().codec)
      return;  // a result for settings already changed again
    quality_->setText(qualitySummary(r, true));
    strip_->setCurrent(r.kl, r.intervals.kl.lo, r.intervals.kl.hi);
    emit qualityShown();
  });
  connect(service, &QualityService::liveFailed, this, [this](const QString& why) {
    strip_->clearCurrent();
    quality_->setText(tr("Quality: unavailable (%1).").arg(why));
    emit qualityShown();
  });
  // A model loaded after the cache (a kept prefill, a cache file): measure now.
  connect(session_, &Session::modelChanged, this, [this] {
    if (result_ && quality_service_) quality_service_->live(config());
  });
  connect(service, &QualityService::reset, this, [this] {
    strip_->clearCurrent();
    strip_->setMarks({});
  });
  // Reference ticks on the strip: codecs measured at their defaults (rate-distortion view).
  connect(service, &QualityService::sweepPoint, this, [this](const eval::QualityResult& r) {
    const auto cache = session_->cache();
    if (QualityService::complete({r.config.codec, {}}, cache ? &cache->shape() : nullptr).params !=
        r.config.params)
      return;
    marks_[qs(r.config.codec)] = r.kl;
    std::vector<QualityStrip::Mark> marks;
    for (const auto& [name, kl] : marks_)
      if (name == QLatin1String("int8") || name == QLatin1String("int4") || name == QLatin1String("cachegen"))
        marks.push_back({name, kl});
    strip_->setMarks(marks);
  });
}
#endif

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
  return tr("GUI-thread listeners %1 ms, encode%2 on a worker %3 ms, redraw %4 ms; exact encode %5 ms")
      .arg(listeners_ms_, 0, 'f', 1)
      .arg(stages_ ? tr(" + stage analysis") : QString())
      .arg(worker_ms_, 0, 'f', 1)
      .arg(redraw_ms_, 0, 'f', 1)
      .arg(exact_worker_ms_, 0, 'f', 1);
}

QString CodecPanel::sizeReadout() const {
  return readout_->text();
}

std::shared_ptr<const kv::KVCache> CodecPanel::subsetOf(const std::shared_ptr<const kv::KVCache>& cache) {
  // Spans spread over the context (its start differs from its middle), each
  // long enough to keep token locality: kSubsetSpans x kSubsetSpanTokens.
  if (!cache) return nullptr;
  if (subset_for_ != cache) {
    subset_ = tokenSubset(*cache, kSubsetSpans, kSubsetSpanTokens);
    subset_for_ = cache;
  }
  return subset_;
}

const StagedEncode* CodecPanel::rememberedEncode(const std::shared_ptr<const kv::KVCache>& cache,
                                                 const codec::CodecConfig& config) const {
  if (!cache || remembered_cache_.lock() != cache) return nullptr;
  for (const auto& [c, e] : remembered_)
    if (c.codec == config.codec && c.params == config.params) return &e;
  return nullptr;
}

void CodecPanel::remember(const std::shared_ptr<const kv::KVCache>& cache, const codec::CodecConfig& config,
                          const StagedEncode& encode) {
  if (remembered_cache_.lock() != cache) remembered_.clear();
  remembered_cache_ = cache;
  std::erase_if(remembered_, [&](const auto& r) {
    return r.first.codec == config.codec && r.first.params == config.params;
  });
  remembered_.insert(remembered_.begin(), {config, encode});
  if (remembered_.size() > kRememberedEncodes) remembered_.pop_back();
}

void CodecPanel::scheduleEncode() {
  // Timed from here: what listeners of configChanged() do on the GUI thread
  // (the pipeline trace) is part of the wait the user sees.
  change_timer_.start();
#if KVSCOPE_GUI_HAVE_EVAL
  // The measurement of the settings before this change is superseded: it
  // would take a core from the encode (measured again after the encode).
  if (quality_service_) quality_service_->cancelLive();
#endif
  emit configChanged();
  const auto cache = session_->cache();
  if (!cache || cache->empty() || codec_combo_->currentIndex() < 0) return;
  listeners_ms_ = change_timer_.nsecsElapsed() / 1e6;
  const codec::CodecConfig cfg = config();
  const kv::CacheShape shape = cache->shape();
  // The first view of a change, drawn while the exact encode of the whole
  // cache runs (retune_estimate.h): the touched layers alone when only some
  // layers' bins changed, else a subset of the tokens of a large cache.
  std::optional<std::vector<int>> touched;
  const bool have_exact = result_ && result_cache_.lock() == cache;
  // Some layers encoded apart (touched, sampled) only without a calibration
  // file: its tables fit every layer of the model, not a part.
  const bool layer_parts = subset_enabled_ && encodesLayerSubsets(cfg);
  if (have_exact && layer_parts) touched = layersTouched(result_config_, cfg, shape.layers);
  if (const StagedEncode* known = rememberedEncode(cache, cfg)) {
    // Settings encoded exactly a moment ago (a change undone): that result
    // is this one. A job all the same, so results of the encodes before it
    // are dropped.
    first_view_pending_ = true;
    ++encodes_started_;
    const StagedEncode same = *known;
    runner_->start(tr("Encoding (%1)").arg(qs(cfg.codec)), [=, this](const ProgressFn&) {
      return std::function<void()>([=, this] {
        exact_worker_ms_ = 0;
        result_coded_alone_ = cfg.codec == "cachegen" && layersCodedAlone(*same.result);
        result_config_ = cfg;
        result_cache_ = cache;
        showResult(same.result, same.stages, shape, QString());
      });
    });
    return;
  }
  // Calibrated tables or channel weights: a layer alone is coded otherwise.
  if (touched && (int(touched->size()) * 4 > shape.layers || !result_coded_alone_)) touched.reset();
  const StagedEncode last{result_, stages_};
  const std::size_t last_header = have_exact ? result_->size.header_bytes : 0;
  const codec::CodecConfig last_config = result_config_;
  // A change every stream feels: a few layers of a token subset, each layer
  // of the last exact encode scaled as its nearest sampled layer changed.
  std::vector<int> sampled;
  if (!touched && have_exact && layer_parts && result_coded_alone_ && perLayerBins(cfg, shape.layers) &&
      perLayerBins(result_config_, shape.layers) && shape.layers >= 2 * kSampledLayers)
    sampled = spreadLayers(shape.layers, kSampledLayers);
  const auto subset = subset_enabled_ && !touched && sampled.empty() ? subsetOf(cache) : nullptr;
  first_view_pending_ = true;
  ++encodes_started_;
  const quint64 gen = runner_->generation() + 1;  // the job about to start
  runner_->start(tr("Encoding (%1)").arg(qs(cfg.codec)), [=, this](const ProgressFn& progress) {
    QElapsedTimer worker;
    worker.start();
    codec::EncodeOptions options;
    options.progress = progress;
    std::optional<StagedEncode> estimate;
    QString note;
    if (touched) {
      const kv::KVCache part = layerSubset(*cache, *touched);
      estimate =
          patchLayers(last, encodeWithStages(part, layerSubsetConfig(cfg, *touched), options), *touched);
      QStringList names;
      for (int l : *touched) names << QString::number(l);
      note = tr("layer%1 %2 re-encoded over all %3 tokens, the other layers as last encoded")
                 .arg(touched->size() == 1 ? QString() : QStringLiteral("s"))
                 .arg(names.join(QStringLiteral(", ")))
                 .arg(shape.tokens);
    } else if (!sampled.empty()) {
      // The same part at the last exact settings too: the ratio cancels the part's own bias.
      const kv::KVCache layers_part = layerSubset(*cache, sampled);
      const auto part = tokenSubset(layers_part, kSubsetSpans, kSampledSpanTokens);
      const kv::KVCache& coded = part ? *part : layers_part;
      const StagedEncode now = encodeWithStages(coded, layerSubsetConfig(cfg, sampled), options);
      const StagedEncode before = encodeWithStages(coded, layerSubsetConfig(last_config, sampled), options);
      estimate = scaleBySampledLayers(last, now, before, sampled);
      note = tr("estimated from %1 of %2 layers over %3 of %4 tokens")
                 .arg(sampled.size())
                 .arg(shape.layers)
                 .arg(coded.shape().tokens)
                 .arg(shape.tokens);
    } else if (subset) {
      estimate = scaleToFull(encodeWithStages(*subset, cfg, options), shape, subset->shape(), last_header);
      note = tr("estimated from %1 of %2 tokens").arg(subset->shape().tokens).arg(shape.tokens);
    }
    if (estimate) {
      const double estimate_ms = worker.nsecsElapsed() / 1e6;
      QMetaObject::invokeMethod(
          this,
          [=, this] {
            if (gen != runner_->generation()) return;
            worker_ms_ = estimate_ms;
            showResult(estimate->result, estimate->stages, shape, note);
          },
          Qt::QueuedConnection);
    }
    const StagedEncode exact = encodeWithStages(*cache, cfg, options);
    const double worker_ms = worker.nsecsElapsed() / 1e6;
    const bool coded_alone = cfg.codec == "cachegen" && layersCodedAlone(*exact.result);
    return std::function<void()>([this, exact, cache, worker_ms, cfg, coded_alone] {
      exact_worker_ms_ = worker_ms;
      result_coded_alone_ = coded_alone;
      result_config_ = cfg;
      result_cache_ = cache;
      remember(cache, cfg, exact);
      showResult(exact.result, exact.stages, cache->shape(), QString());
    });
  });
}

void CodecPanel::showResult(std::shared_ptr<const codec::EncodeResult> result,
                            std::shared_ptr<const codec::StageAnalysis> stages, const kv::CacheShape& shape,
                            const QString& estimate_note) {
  QElapsedTimer redraw;
  redraw.start();
  const bool estimate = !estimate_note.isEmpty();
  if (!estimate) {
    result_ = result;
    stages_ = stages;
  }
  const codec::SizeReport& s = result->size;
  const std::size_t int8 = codec::int8_reference_bytes(shape);
  const double vs_int8 = s.encoded_bytes == 0 ? 0.0 : double(int8) / double(s.encoded_bytes);
  const QString size = tr("%1 bits/element</%5> &nbsp; %2 KB &nbsp; %3x smaller than fp16 &nbsp; %4x vs int8")
                           .arg(s.bits_per_element(), 0, 'f', 3)
                           .arg(double(s.encoded_bytes) / 1024.0, 0, 'f', 1)
                           .arg(s.ratio_vs_fp16(), 0, 'f', 2)
                           .arg(vs_int8, 0, 'f', 2)
                           .arg(estimate ? QStringLiteral("i") : QStringLiteral("b"));
  readout_->setText(estimate ? tr("<i>≈ %1<br><i>estimate: %2; the exact size follows</i>")
                                   .arg(size, estimate_note.toHtmlEscaped())
                             : tr("<b>%1<br>header %2 B, tables %3 B, steps %6 B, payload %4 B; encode %5 ms")
                                   .arg(size)
                                   .arg(s.header_bytes)
                                   .arg(s.table_bytes)
                                   .arg(s.payload_bytes)
                                   .arg(result->seconds * 1000, 0, 'f', 1)
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
  if (stages) {
    // cachegen: fixed-length symbols -> their entropy -> after anchor/delta -> what the coder wrote.
    add(tr("quantized"), stages->quantized_fixed.overall);
    add(tr("entropy (raw)"), stages->raw_entropy.overall);
    add(tr("entropy (delta)"), stages->delta_entropy.overall);
    add(tr("coded payload"), stages->coded_payload);
    add(tr("coded (all)"), stages->coded.overall);
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

  const double since_change = change_timer_.isValid() ? change_timer_.nsecsElapsed() / 1e6 : 0;
  if (estimate) {
    redraw_ms_ = redraw.nsecsElapsed() / 1e6;
    last_update_ms_ = since_change;
    first_view_pending_ = false;
    timing_->setText(
        tr("retune: first view %1 ms (an estimate), exact size follows").arg(last_update_ms_, 0, 'f', 1));
    timing_->setToolTip(timingBreakdown());
    emit estimated();
    return;
  }
  exact_update_ms_ = since_change;
  if (first_view_pending_) {  // no estimate this time: the exact result is the first view
    redraw_ms_ = redraw.nsecsElapsed() / 1e6;
    worker_ms_ = exact_worker_ms_;
    last_update_ms_ = since_change;
  }
  first_view_pending_ = true;
  timing_->setText(last_update_ms_ < exact_update_ms_ - 0.05
                       ? tr("retune: first view %1 ms, exact %2 ms")
                             .arg(last_update_ms_, 0, 'f', 1)
                             .arg(exact_update_ms_, 0, 'f', 1)
                       : tr("re-encode + redraw: %1 ms").arg(last_update_ms_, 0, 'f', 1));
  timing_->setToolTip(timingBreakdown());
#if KVSCOPE_GUI_HAVE_EVAL
  // Quality after the size: the encode the user waits for gets the cores first.
  if (quality_service_) quality_service_->live(config());
#endif
  emit encoded();
}

}  // namespace kvscope::gui
