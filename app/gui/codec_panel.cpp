#include "codec_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QVBoxLayout>
#include <cmath>

#include "help_text.h"
#include "job_runner.h"
#include "kvscope/codec/stage_analysis.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}

int toInt(double v, int fallback) {
  return std::isfinite(v) ? static_cast<int>(std::clamp(v, -2.0e9, 2.0e9)) : fallback;
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
  params_box_ = new QWidget;
  params_form_ = new QFormLayout(params_box_);
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
  waterfall_->yAxis->setLabel(tr("bits per element"));
  stage_bars_ = new QCPBars(waterfall_->xAxis, waterfall_->yAxis);
  stage_bars_->setName(tr("bits per element"));
  waterfall_->setToolTip(help::text(help::Concept::Entropy));

  layer_plot_ = new PlotWidget;
  layer_plot_->setObjectName(QStringLiteral("layerSizePlot"));
  layer_plot_->xAxis->setLabel(tr("layer"));
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
  top_layout->addWidget(params_box_);
  top_layout->addWidget(readout_);
  top_layout->addWidget(timing_);
  top_layout->addWidget(progress_);
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->addWidget(top);
  splitter->addWidget(waterfall_);
  splitter->addWidget(layer_plot_);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(splitter);

  connect(codec_combo_, &QComboBox::currentIndexChanged, this, [this] {
    rebuildControls();
    scheduleEncode();
  });
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
  const auto cache_now = session_->cache();
  const kv::CacheShape geometry = cache_now
                                      ? kv::CacheShape{cache_now->shape().layers, cache_now->shape().kv_heads,
                                                       0, cache_now->shape().head_dim}
                                      : kv::CacheShape{};
  const QString codec_name = codec_combo_->currentText();
  std::map<std::string, QString> previous;
  if (codec_name == built_codec_ && geometry == built_geometry_)
    for (const auto& [name, accessors] : controls_) previous[name] = accessors.first();
  built_codec_ = codec_name;
  built_geometry_ = geometry;
  controls_.clear();
  while (params_form_->rowCount() > 0) params_form_->removeRow(0);
  if (codec_combo_->currentIndex() < 0) return;
  const codec::Codec& codec = codec::find_codec(codec_combo_->currentText().toStdString());
  codec_help_->setText(qs(codec.description()));
  const auto cache = session_->cache();
  const kv::CacheShape* shape = cache ? &cache->shape() : nullptr;
  for (const codec::ParamSpec& spec : codec.params(shape)) {
    const QString help = qs(spec.help);
    QWidget* control = nullptr;
    std::function<QString()> get;
    std::function<bool(const QString&)> set;
    switch (spec.type) {
      case codec::ParamSpec::Type::Int: {
        auto* box = new QSpinBox;
        box->setRange(toInt(spec.min, 0), toInt(spec.max, 1 << 30));
        box->setValue(qs(spec.default_value).toInt());
        connect(box, &QSpinBox::valueChanged, this, &CodecPanel::scheduleEncode);
        get = [box] { return QString::number(box->value()); };
        set = [box](const QString& v) {
          bool ok = false;
          const int i = v.toInt(&ok);
          if (ok) box->setValue(i);
          return ok;
        };
        control = box;
        break;
      }
      case codec::ParamSpec::Type::Float: {
        auto* box = new QDoubleSpinBox;
        box->setDecimals(4);
        box->setRange(spec.min, spec.max);
        box->setSingleStep((spec.max - spec.min) / 100.0);
        box->setValue(qs(spec.default_value).toDouble());
        connect(box, &QDoubleSpinBox::valueChanged, this, &CodecPanel::scheduleEncode);
        get = [box] { return QString::number(box->value(), 'g', 8); };
        set = [box](const QString& v) {
          bool ok = false;
          const double d = v.toDouble(&ok);
          if (ok) box->setValue(d);
          return ok;
        };
        control = box;
        break;
      }
      case codec::ParamSpec::Type::Bool: {
        auto* box = new QCheckBox;
        box->setChecked(spec.default_value == "true" || spec.default_value == "1");
        connect(box, &QCheckBox::toggled, this, &CodecPanel::scheduleEncode);
        get = [box] { return box->isChecked() ? QStringLiteral("true") : QStringLiteral("false"); };
        set = [box](const QString& v) {
          box->setChecked(v == QLatin1String("true") || v == QLatin1String("1"));
          return true;
        };
        control = box;
        break;
      }
      case codec::ParamSpec::Type::Choice: {
        auto* box = new QComboBox;
        for (const auto& c : spec.choices) box->addItem(qs(c));
        box->setCurrentText(qs(spec.default_value));
        connect(box, &QComboBox::currentIndexChanged, this, &CodecPanel::scheduleEncode);
        get = [box] { return box->currentText(); };
        set = [box](const QString& v) {
          const int i = box->findText(v);
          if (i >= 0) box->setCurrentIndex(i);
          return i >= 0;
        };
        control = box;
        break;
      }
      case codec::ParamSpec::Type::Text: {
        auto* edit = new QLineEdit(qs(spec.default_value));
        connect(edit, &QLineEdit::editingFinished, this, &CodecPanel::scheduleEncode);
        get = [edit] { return edit->text(); };
        set = [edit](const QString& v) {
          edit->setText(v);
          return true;
        };
        control = edit;
        break;
      }
      case codec::ParamSpec::Type::IntList: {
        // One spin box per element: e.g. the bins of each layer group.
        auto* row = new QWidget;
        auto* row_layout = new QHBoxLayout(row);
        row_layout->setContentsMargins(0, 0, 0, 0);
        auto boxes = std::make_shared<std::vector<QSpinBox*>>();
        const QStringList defaults = qs(spec.default_value).split(QLatin1Char(','), Qt::SkipEmptyParts);
        for (int i = 0; i < defaults.size(); ++i) {
          auto* box = new QSpinBox;
          box->setRange(toInt(spec.min, 0), toInt(spec.max, 1 << 30));
          box->setValue(defaults[i].trimmed().toInt());
          box->setToolTip(tr("%1, element %2: %3").arg(qs(spec.name)).arg(i + 1).arg(help));
          box->setObjectName(qs(spec.name) + QStringLiteral("_%1").arg(i));
          connect(box, &QSpinBox::valueChanged, this, &CodecPanel::scheduleEncode);
          row_layout->addWidget(box);
          boxes->push_back(box);
        }
        get = [boxes] {
          QStringList parts;
          for (QSpinBox* b : *boxes) parts << QString::number(b->value());
          return parts.join(QLatin1Char(','));
        };
        set = [boxes](const QString& v) {
          const QStringList parts = v.split(QLatin1Char(','), Qt::SkipEmptyParts);
          if (parts.size() != static_cast<int>(boxes->size())) return false;
          for (int i = 0; i < parts.size(); ++i)
            (*boxes)[static_cast<std::size_t>(i)]->setValue(parts[i].toInt());
          return true;
        };
        control = row;
        break;
      }
    }
    if (!control) continue;  // a parameter type this GUI does not know: the codec uses its default
    control->setObjectName(control->objectName().isEmpty() ? qs(spec.name) : control->objectName());
    control->setToolTip(help);
    auto* label = new QLabel(qs(spec.name));
    label->setToolTip(help);
    params_form_->addRow(label, control);
    controls_[spec.name] = {get, set};
    auto it = previous.find(spec.name);
    if (it != previous.end()) {
      QSignalBlocker block(control);
      for (QObject* child : control->findChildren<QObject*>()) child->blockSignals(true);
      set(it->second);
      for (QObject* child : control->findChildren<QObject*>()) child->blockSignals(false);
    }
  }
}

codec::CodecConfig CodecPanel::config() const {
  codec::CodecConfig c;
  c.codec = codec_combo_->currentText().toStdString();
  for (const auto& [name, accessors] : controls_) c.params[name] = accessors.first().toStdString();
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
  auto it = controls_.find(name.toStdString());
  return it != controls_.end() && it->second.second(value);
}

QString CodecPanel::sizeReadout() const {
  return readout_->text();
}

void CodecPanel::scheduleEncode() {
  emit configChanged();
  const auto cache = session_->cache();
  if (!cache || cache->empty() || codec_combo_->currentIndex() < 0) return;
  change_timer_.start();
  const codec::CodecConfig cfg = config();
  runner_->start(tr("Encoding (%1)").arg(qs(cfg.codec)), [this, cache, cfg](const ProgressFn& progress) {
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
    return std::function<void()>([this, result, stages, shape] { showResult(result, stages, shape); });
  });
}

void CodecPanel::showResult(std::shared_ptr<const codec::EncodeResult> result,
                            std::shared_ptr<const codec::StageAnalysis> stages, const kv::CacheShape& shape) {
  result_ = std::move(result);
  stages_ = std::move(stages);
  const codec::SizeReport& s = result_->size;
  const std::size_t int8 = codec::int8_reference_bytes(shape);
  const double vs_int8 = s.encoded_bytes == 0 ? 0.0 : double(int8) / double(s.encoded_bytes);
  readout_->setText(tr("<b>%1 bits/element</b> &nbsp; %2 KB &nbsp; %3x smaller than fp16 &nbsp; %4x vs int8"
                       "<br>header %5 B, tables %6 B, payload %7 B; encode %8 ms")
                        .arg(s.bits_per_element(), 0, 'f', 3)
                        .arg(double(s.encoded_bytes) / 1024.0, 0, 'f', 1)
                        .arg(s.ratio_vs_fp16(), 0, 'f', 2)
                        .arg(vs_int8, 0, 'f', 2)
                        .arg(s.header_bytes)
                        .arg(s.table_bytes)
                        .arg(s.payload_bytes)
                        .arg(result_->seconds * 1000, 0, 'f', 1));

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
  waterfall_->xAxis->setTicker(ticker);
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

  if (change_timer_.isValid()) last_update_ms_ = change_timer_.nsecsElapsed() / 1e6;
  timing_->setText(tr("re-encode + redraw: %1 ms").arg(last_update_ms_, 0, 'f', 1));
  emit encoded();
}

}  // namespace kvscope::gui
