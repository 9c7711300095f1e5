// SPDX-License-Identifier: GPL-3.0-or-later
#include "rd_panel.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFontMetricsF>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QMouseEvent>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QTextStream>
#include <QTimer>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <set>

#include "job_runner.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "plot_widget.h"
#include "quality_service.h"
#include "session.h"

namespace kvscope::gui {

namespace {

// KL of a lossless codec is 0, which a log axis cannot show: such points sit
// on this floor, and their label says so.
constexpr double kKlFloor = 1e-6;

QString qs(const std::string& s) {
  return QString::fromStdString(s);
}

std::string key(const codec::CodecConfig& c) {
  std::string k = c.codec;
  for (const auto& [n, v] : c.params) k += ";" + n + "=" + v;
  return k;
}

double shownKl(double kl) {
  return std::max(kl, kKlFloor);
}

QString fmt(double v) {
  return QString::number(v, 'g', 4);
}

}  // namespace

QStringList RdPanel::suggestValues(const codec::ParamSpec& spec) {
  using T = codec::ParamSpec::Type;
  QStringList out;
  auto add = [&](const QString& v) {
    if (!out.contains(v)) out << v;
  };
  const double factors[] = {0.25, 0.5, 1, 2, 4};
  switch (spec.type) {
    case T::Bool:
      return {QStringLiteral("false"), QStringLiteral("true")};
    case T::Choice:
      for (const auto& c : spec.choices) add(qs(c));
      return out;
    case T::Int:
    case T::Float: {
      const double d = QString::fromStdString(spec.default_value).toDouble();
      if (d == 0) {
        for (int i = 0; i < 5; ++i) {
          const double v = spec.min + (spec.max - spec.min) * i / 4.0;
          add(spec.type == T::Int ? QString::number(std::llround(v)) : fmt(v));
        }
        return out;
      }
      for (double f : factors) {
        const double v = std::clamp(d * f, spec.min, spec.max);
        add(spec.type == T::Int ? QString::number(std::llround(v)) : fmt(v));
      }
      return out;
    }
    case T::IntList: {
      const QStringList parts = qs(spec.default_value).split(QLatin1Char(','), Qt::SkipEmptyParts);
      if (parts.isEmpty()) return out;
      for (double f : {0.5, 0.75, 1.0, 1.5, 2.0}) {
        QStringList scaled;
        for (const QString& p : parts)
          scaled << QString::number(std::clamp<long long>(std::llround(p.toDouble() * f),
                                                          std::llround(spec.min), std::llround(spec.max)));
        add(scaled.join(QLatin1Char(',')));
      }
      return out;
    }
    case T::Text:
      return out;
  }
  return out;
}

RdPanel::RdPanel(Session* session, QualityService* quality, std::function<codec::CodecConfig()> current,
                 QWidget* parent)
    : QWidget(parent), session_(session), quality_(quality), current_(std::move(current)) {
  defaults_ = new QPushButton(tr("Every codec at defaults"));
  defaults_->setObjectName(QStringLiteral("rdDefaultsButton"));
  defaults_->setToolTip(tr("One point per registered codec, at its default parameters."));
  codec_ = new QComboBox;
  codec_->setObjectName(QStringLiteral("rdSweepCodec"));
  for (const codec::Codec* c : codec::all_codecs()) codec_->addItem(qs(c->name()));
  param_ = new QComboBox;
  param_->setObjectName(QStringLiteral("rdSweepParam"));
  values_ = new QLineEdit;
  values_->setObjectName(QStringLiteral("rdSweepValues"));
  values_->setToolTip(tr("Values to try, separated by spaces (a list parameter: one comma list per value)."));
  add_ = new QPushButton(tr("Add sweep"));
  add_->setObjectName(QStringLiteral("rdAddSweep"));
  cancel_ = new QPushButton(tr("Stop"));
  clear_ = new QPushButton(tr("Clear"));
  export_ = new QPushButton(tr("Export results..."));
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  progress_->setMaximumWidth(160);
  progress_->setTextVisible(false);
  status_ = new QLabel;
  status_->setWordWrap(true);
  status_->setObjectName(QStringLiteral("rdStatus"));

  target_ = new QDoubleSpinBox;
  target_->setObjectName(QStringLiteral("rdKlTarget"));
  target_->setDecimals(4);
  target_->setRange(0.0001, 10);
  target_->setSingleStep(0.005);
  target_->setValue(0.01);
  target_->setPrefix(tr("KL target "));
  target_->setSuffix(tr(" nats"));
  target_->setToolTip(tr("Drawn as a dashed line; the status names the cheapest measured point under it."));
  table_ = new QTableWidget(0, 7);
  table_->setObjectName(QStringLiteral("rdTable"));
  table_->setHorizontalHeaderLabels({tr("series"), tr("codec"), tr("bits/elem"), tr("KL [95%]"),
                                     tr("top-1 % [95%]"), tr("Δppl % [95%]"), tr("settings")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setStretchLastSection(
      true);  // the long settings column last, never pushing metrics away
  table_->verticalHeader()->setVisible(false);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSortingEnabled(true);
  table_->setToolTip(tr("Double-click a row to load its settings."));
  plot_ = new PlotWidget;
  plot_->setObjectName(QStringLiteral("rdPlot"));
  plot_->xAxis->setLabel(tr("bits per element (whole stream)"));
  plot_->yAxis->setLabel(tr("KL to the fp16 cache (nats, log)"));
  plot_->yAxis->setScaleType(QCPAxis::stLogarithmic);
  plot_->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
  plot_->yAxis->setNumberFormat(QStringLiteral("eb"));
  plot_->yAxis->setNumberPrecision(0);
  plot_->legend->setVisible(true);
  plot_->placeLegendOutside();
  current_graph_ = plot_->addGraph();
  current_graph_->setName(tr("current settings"));
  current_graph_->setLineStyle(QCPGraph::lsNone);
  current_error_ = new QCPErrorBars(plot_->xAxis, plot_->yAxis);
  current_error_->setDataPlottable(current_graph_);
  current_error_->setErrorType(QCPErrorBars::etValueError);
  current_error_->removeFromLegend();
  plot_->setHomeView([this] {
    // Margins so points and labels at the edges stay inside.
    const QCPRange x = plot_->xAxis->range();
    plot_->xAxis->setRange(std::max(0.0, x.lower - 0.08 * x.size() - 0.2), x.upper + 0.15 * x.size() + 0.2);
    const QCPRange y = plot_->yAxis->range();
    plot_->yAxis->setRange(std::max(kKlFloor / 3, y.lower / 3), std::max(y.upper * 3, 1e-3));
  });
  plot_->setHoverText([this](double x, double y) -> QString {
    const QPointF px(plot_->xAxis->coordToPixel(x), plot_->yAxis->coordToPixel(y));
    const auto config = configAt(px, 12);
    if (!config) return {};
    for (const auto& r : points_)
      if (key(r.config) == key(*config)) {
        QStringList params;
        for (const auto& [k, v] : r.config.params) params << qs(k) + QLatin1Char('=') + qs(v);
        return tr("%1 (%2)\n%3 bits/element\n%4\nclick to load these settings")
            .arg(qs(r.config.codec), params.join(QStringLiteral(", ")))
            .arg(r.bits_per_element, 0, 'f', 3)
            .arg(qualitySummary(r, false));
      }
    return {};
  });
  plot_->installEventFilter(this);
  auto recolour = [this] {
    current_graph_->setScatterStyle(
        QCPScatterStyle(QCPScatterStyle::ssStar, QPen(plot_->seriesColor(1), 2.5), Qt::NoBrush, 18));
    current_error_->setPen(QPen(plot_->seriesColor(1), 2));
    redraw();
  };
  connect(plot_, &PlotWidget::paletteApplied, this, recolour);
  connect(plot_, &QCustomPlot::afterLayout, this, &RdPanel::placeLabels);

  auto* sweep_row = new QHBoxLayout;
  sweep_row->addWidget(defaults_);
  sweep_row->addSpacing(12);
  sweep_row->addWidget(new QLabel(tr("Sweep")));
  sweep_row->addWidget(codec_);
  sweep_row->addWidget(param_);
  sweep_row->addWidget(values_, 1);
  sweep_row->addWidget(add_);
  auto* run_row = new QHBoxLayout;
  run_row->addWidget(target_);
  run_row->addWidget(cancel_);
  run_row->addWidget(clear_);
  run_row->addWidget(export_);
  run_row->addWidget(progress_);
  run_row->addWidget(status_, 1);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(sweep_row);
  layout->addLayout(run_row);
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->setChildrenCollapsible(false);
  splitter->addWidget(plot_);
  splitter->addWidget(table_);
  splitter->setStretchFactor(0, 3);
  splitter->setStretchFactor(1, 1);
  layout->addWidget(splitter, 1);
  target_line_ = new QCPItemStraightLine(plot_);
  connect(target_, &QDoubleSpinBox::valueChanged, this, [this] { redraw(); });
  connect(table_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) {
    const QVariant v = table_->item(row, 0)->data(Qt::UserRole);
    const int i = v.toInt();
    if (v.isValid() && i >= 0 && i < int(points_.size())) emit loadRequested(points_[std::size_t(i)].config);
  });

  connect(codec_, &QComboBox::currentIndexChanged, this, &RdPanel::rebuildParams);
  connect(param_, &QComboBox::currentIndexChanged, this, [this] {
    const auto cache = session_->cache();
    for (const auto& spec :
         codec::find_codec(codec_->currentText().toStdString()).params(cache ? &cache->shape() : nullptr))
      if (qs(spec.name) == param_->currentText())
        values_->setText(suggestValues(spec).join(QLatin1Char(' ')));
  });
  connect(defaults_, &QPushButton::clicked, this, &RdPanel::measureDefaults);
  connect(add_, &QPushButton::clicked, this, [this] {
    addSweep(codec_->currentText(), param_->currentText(),
             values_->text().split(QLatin1Char(' '), Qt::SkipEmptyParts));
  });
  connect(cancel_, &QPushButton::clicked, quality_, &QualityService::cancelSweep);
  connect(clear_, &QPushButton::clicked, this, [this] {
    quality_->cancelSweep();
    for (auto& s : series_) plot_->removeGraph(s.graph);
    series_.clear();
    points_.clear();
    redraw();
  });
  connect(export_, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(
        this, tr("Export rate-distortion results"), QStringLiteral("rate-distortion.csv"), tr("CSV (*.csv)"));
    QString error;
    if (!path.isEmpty() && !exportResults(path, &error))
      QMessageBox::warning(this, tr("Export failed"), error);
  });
  connect(quality_, &QualityService::sweepPoint, this, &RdPanel::onPoint);
  connect(quality_, &QualityService::sweepFinished, this, [this] {
    status_->setText(tr("%1 point(s) on %2.").arg(points_.size()).arg(session_->contextName()));
    // After the runner went idle (the signal comes first): name the cheapest point.
    QTimer::singleShot(0, this, &RdPanel::describeTarget);
  });
  connect(quality_, &QualityService::liveResult, this, [this](const eval::QualityResult& r) {
    current_result_ = r;
    markCurrent();
  });
  connect(quality_, &QualityService::reset, this, [this] {
    points_.clear();
    current_result_.reset();
    redraw();
  });
  JobRunner* runner = quality_->sweepRunner();
  connect(runner, &JobRunner::progress, this, [this](double f, const QString& stage) {
    progress_->setValue(int(f * 1000));
    status_->setText(stage);
  });
  connect(runner, &JobRunner::busyChanged, this, [this](bool busy) {
    cancel_->setEnabled(busy);
    if (!busy) progress_->setValue(0);
  });
  connect(runner, &JobRunner::failed, this, [this](const QString&, const QString& message) {
    status_->setText(tr("Failed: %1").arg(message));
  });
  cancel_->setEnabled(false);
  const int cachegen = codec_->findText(QStringLiteral("cachegen"));
  if (cachegen >= 0) codec_->setCurrentIndex(cachegen);
  rebuildParams();
  recolour();
}

void RdPanel::rebuildParams() {
  const QString previous = param_->currentText();
  QSignalBlocker block(param_);
  param_->clear();
  const auto cache = session_->cache();
  for (const auto& spec :
       codec::find_codec(codec_->currentText().toStdString()).params(cache ? &cache->shape() : nullptr)) {
    if (spec.type == codec::ParamSpec::Type::Text) continue;
    param_->addItem(qs(spec.name));
    param_->setItemData(param_->count() - 1, qs(spec.help), Qt::ToolTipRole);
  }
  const int keep = param_->findText(previous);
  const int bins = param_->findText(QStringLiteral("key_bins"));
  param_->setCurrentIndex(keep >= 0 ? keep : bins >= 0 ? bins : 0);
  block.unblock();
  emit param_->currentIndexChanged(param_->currentIndex());
}

void RdPanel::measureDefaults() {
  Series* s = nullptr;
  for (auto& existing : series_)
    if (existing.param.isEmpty()) s = &existing;
  if (!s) {
    series_.push_back({tr("every codec at defaults"), QString(), {}, plot_->addGraph()});
    s = &series_.back();
    s->graph->setLineStyle(QCPGraph::lsNone);
    s->graph->setName(s->label);
  }
  s->configs.clear();
  const auto cache = session_->cache();
  for (const codec::Codec* c : codec::all_codecs())
    s->configs.push_back(QualityService::complete({c->name(), {}}, cache ? &cache->shape() : nullptr));
  const QString why = quality_->unavailableReason();
  status_->setText(why.isEmpty() ? tr("Measuring every codec at its defaults...")
                                 : tr("Quality unavailable: %1").arg(why));
  redraw();
  quality_->sweep(s->configs, tr("Rate-distortion: codec defaults"));
}

void RdPanel::addSweep(const QString& codec_name, const QString& param, const QStringList& values) {
  const auto cache = session_->cache();
  const kv::CacheShape* shape = cache ? &cache->shape() : nullptr;
  Series s;
  s.label = tr("%1: %2").arg(codec_name, param);
  s.param = param;
  // The current settings of that codec are the base when it is the one in the
  // codec panel; else its defaults.
  codec::CodecConfig base = current_ ? current_() : codec::CodecConfig{};
  if (qs(base.codec) != codec_name) base = {codec_name.toStdString(), {}};
  std::set<std::string> seen;
  for (const QString& v : values) {
    codec::CodecConfig c = base;
    c.params[param.toStdString()] = v.toStdString();
    c = QualityService::complete(c, shape);
    if (seen.insert(key(c)).second) s.configs.push_back(c);
  }
  if (s.configs.empty()) return;
  // A new sweep of the same parameter replaces the old one.
  for (auto it = series_.begin(); it != series_.end(); ++it)
    if (it->label == s.label) {
      plot_->removeGraph(it->graph);
      series_.erase(it);
      break;
    }
  s.graph = plot_->addGraph();
  s.graph->setName(s.label);
  s.graph->setLineStyle(QCPGraph::lsLine);
  std::vector<codec::CodecConfig> configs = s.configs;
  series_.push_back(std::move(s));
  const QString why = quality_->unavailableReason();
  status_->setText(why.isEmpty() ? tr("Measuring %1 values...").arg(configs.size())
                                 : tr("Quality unavailable: %1").arg(why));
  redraw();
  quality_->sweep(configs, tr("Rate-distortion: %1").arg(series_.back().label));
}

void RdPanel::onPoint(const eval::QualityResult& result) {
  const std::string k = key(result.config);
  auto it = std::find_if(points_.begin(), points_.end(), [&](const auto& p) { return key(p.config) == k; });
  if (it != points_.end())
    *it = result;
  else
    points_.push_back(result);
  redraw();
}

void RdPanel::markCurrent() {
  redraw();
}

void RdPanel::redraw() {
  // Point labels are items: rebuilt with the data (the target line too).
  plot_->clearItems();
  labels_.clear();
  target_line_ = new QCPItemStraightLine(plot_);
  target_line_->point1->setCoords(0, target_->value());
  target_line_->point2->setCoords(1, target_->value());
  target_line_->setPen(QPen(plot_->seriesColor(2), 1.5, Qt::DashLine));
  std::map<std::string, const eval::QualityResult*> by_key;
  for (const auto& p : points_) by_key[key(p.config)] = &p;
  int colour = 0;
  const QColor text = plot_->palette().color(QPalette::Text);
  for (auto& s : series_) {
    QVector<double> x, y;
    std::vector<std::pair<double, QString>> labels;
    std::vector<std::tuple<double, double, QString>> pts;
    for (const auto& c : s.configs) {
      const auto it = by_key.find(key(c));
      if (it == by_key.end()) continue;
      const auto& r = *it->second;
      QString label = s.param.isEmpty() ? qs(c.codec) : qs(c.params.at(s.param.toStdString()));
      if (r.kl <= kKlFloor) label += tr(" (KL 0: lossless)");
      pts.emplace_back(r.bits_per_element, shownKl(r.kl), label);
    }
    std::sort(pts.begin(), pts.end());
    const QColor c = plot_->seriesColor(s.param.isEmpty() ? 0 : 2 + colour++);
    for (const auto& [px, py, label] : pts) {
      x << px;
      y << py;
      auto* t = new QCPItemText(plot_);
      t->position->setCoords(px, py);
      t->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
      t->setPadding(QMargins(5, 0, 0, 3));
      labels_.push_back(t);
      t->setText(label);
      t->setColor(s.param.isEmpty() ? text : c.darker(plot_->darkBackground() ? 80 : 130));
      t->setClipToAxisRect(true);
    }
    s.graph->setData(x, y, true);
    s.graph->setPen(QPen(c, 1.5));
    s.graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, c, s.param.isEmpty() ? 8 : 7));
  }
  // The current settings: a star with its bootstrap interval.
  const codec::CodecConfig current = current_ ? current_() : codec::CodecConfig{};
  const auto cache = session_->cache();
  std::optional<eval::QualityResult> r = quality_->known(current);
  if (!r && current_result_ &&
      key(current_result_->config) ==
          key(QualityService::complete(current, cache ? &cache->shape() : nullptr)))
    r = current_result_;
  if (r) {
    current_graph_->setData({r->bits_per_element}, {shownKl(r->kl)});
    const bool ci = r->intervals.resamples > 0;
    current_error_->setData(QVector<double>{ci ? shownKl(r->kl) - shownKl(r->intervals.kl.lo) : 0},
                            QVector<double>{ci ? shownKl(r->intervals.kl.hi) - shownKl(r->kl) : 0});
  } else {
    current_graph_->data()->clear();
    current_error_->data()->clear();
  }
  plot_->refresh();
  fillTable();
  describeTarget();
  emit updated();
}

void RdPanel::placeLabels() {
  // Regression (issue 21): labels of nearby points were drawn over each other.
  const QRectF area = plot_->axisRect()->rect();
  auto pixel = [this](const QCPItemText* t) {
    return QPointF(plot_->xAxis->coordToPixel(t->position->key()),
                   plot_->yAxis->coordToPixel(t->position->value()));
  };
  std::vector<QRectF> taken;  // the points' markers, then each label placed
  for (const QCPItemText* t : labels_) taken.emplace_back(pixel(t) - QPointF(5, 5), QSizeF(10, 10));
  constexpr double kGap = 5, kLift = 3;
  for (QCPItemText* t : labels_) {
    const QPointF p = pixel(t);
    const QSizeF size = QFontMetricsF(t->font()).size(0, t->text());
    struct Place {
      Qt::Alignment align;
      QMargins padding;
      QPointF top_left;
    };
    const Place places[] = {
        {Qt::AlignLeft | Qt::AlignBottom,
         QMargins(kGap, 0, 0, kLift),
         {p.x() + kGap, p.y() - kLift - size.height()}},
        {Qt::AlignLeft | Qt::AlignTop, QMargins(kGap, kLift, 0, 0), {p.x() + kGap, p.y() + kLift}},
        {Qt::AlignRight | Qt::AlignBottom,
         QMargins(0, 0, kGap, kLift),
         {p.x() - kGap - size.width(), p.y() - kLift - size.height()}},
        {Qt::AlignRight | Qt::AlignTop,
         QMargins(0, kLift, kGap, 0),
         {p.x() - kGap - size.width(), p.y() + kLift}},
    };
    bool placed = false;
    for (const Place& place : places) {
      const QRectF r(place.top_left, size);
      if (!area.contains(r)) continue;
      if (std::any_of(taken.begin(), taken.end(), [&](const QRectF& o) { return o.intersects(r); })) continue;
      t->setPositionAlignment(place.align);
      t->setPadding(place.padding);
      taken.push_back(r);
      placed = true;
      break;
    }
    t->setVisible(placed);
  }
}

void RdPanel::setKlTarget(double nats) {
  target_->setValue(nats);
}

double RdPanel::klTarget() const {
  return target_->value();
}

std::optional<eval::QualityResult> RdPanel::cheapestUnderTarget() const {
  std::optional<eval::QualityResult> best;
  for (const auto& p : points_)
    if (p.kl <= target_->value() && (!best || p.bits_per_element < best->bits_per_element)) best = p;
  return best;
}

void RdPanel::describeTarget() {
  if (points_.empty() || quality_->sweepRunner()->busy()) return;
  const auto best = cheapestUnderTarget();
  if (!best) {
    status_->setText(
        tr("No measured point has KL under %1 nats: sweep finer settings.").arg(target_->value()));
    return;
  }
  QStringList params;
  for (const auto& [k, v] : best->config.params) params << qs(k) + QLatin1Char('=') + qs(v);
  status_->setText(tr("Cheapest under KL %1: %2 at %3 bits/element (KL %4); click it to load. %5 point(s).")
                       .arg(target_->value())
                       .arg(qs(best->config.codec))
                       .arg(best->bits_per_element, 0, 'f', 3)
                       .arg(best->kl, 0, 'g', 3)
                       .arg(points_.size()));
  status_->setToolTip(params.join(QStringLiteral(", ")));
}

void RdPanel::fillTable() {
  table_->setSortingEnabled(false);
  table_->setRowCount(0);
  auto num = [](double v, int digits) {
    auto* item = new QTableWidgetItem;
    item->setData(Qt::DisplayRole, QString::number(v, 'f', digits).toDouble());
    return item;
  };
  for (std::size_t i = 0; i < points_.size(); ++i) {
    const auto& r = points_[i];
    QString series;
    for (const auto& s : series_)
      for (const auto& c : s.configs)
        if (key(c) == key(r.config)) series = s.label;
    QStringList params;
    for (const auto& [k, v] : r.config.params) params << qs(k) + QLatin1Char('=') + qs(v);
    const auto& iv = r.intervals;
    const int row = table_->rowCount();
    table_->insertRow(row);
    auto* first = new QTableWidgetItem(series);
    first->setData(Qt::UserRole, int(i));
    table_->setItem(row, 0, first);
    table_->setItem(row, 1, new QTableWidgetItem(qs(r.config.codec)));
    table_->setItem(row, 2, num(r.bits_per_element, 3));
    table_->setItem(row, 3,
                    new QTableWidgetItem(QStringLiteral("%1 [%2, %3]")
                                             .arg(r.kl, 0, 'g', 3)
                                             .arg(iv.kl.lo, 0, 'g', 2)
                                             .arg(iv.kl.hi, 0, 'g', 2)));
    table_->setItem(row, 4,
                    new QTableWidgetItem(QStringLiteral("%1 [%2, %3]")
                                             .arg(100 * r.top1_agreement, 0, 'f', 1)
                                             .arg(100 * iv.top1.lo, 0, 'f', 1)
                                             .arg(100 * iv.top1.hi, 0, 'f', 1)));
    table_->setItem(row, 5,
                    new QTableWidgetItem(QStringLiteral("%1 [%2, %3]")
                                             .arg(r.delta_ppl_pct, 0, 'f', 2)
                                             .arg(iv.delta_ppl_pct.lo, 0, 'f', 2)
                                             .arg(iv.delta_ppl_pct.hi, 0, 'f', 2)));
    table_->setItem(row, 6, new QTableWidgetItem(params.join(QStringLiteral("; "))));
  }
  table_->setSortingEnabled(true);
}

std::optional<codec::CodecConfig> RdPanel::configAt(const QPointF& pixel, double radius) const {
  std::optional<codec::CodecConfig> best;
  double best_d = radius;
  for (const auto& r : points_) {
    const double px = plot_->xAxis->coordToPixel(r.bits_per_element);
    const double py = plot_->yAxis->coordToPixel(shownKl(r.kl));
    const double d = std::hypot(px - pixel.x(), py - pixel.y());
    if (d <= best_d) best_d = d, best = r.config;
  }
  return best;
}

bool RdPanel::eventFilter(QObject* watched, QEvent* event) {
  // A click (press and release in place) on a point loads it; a drag pans.
  if (watched == plot_ && event->type() == QEvent::MouseButtonPress) {
    press_ = static_cast<QMouseEvent*>(event)->position();
  } else if (watched == plot_ && event->type() == QEvent::MouseButtonRelease) {
    auto* mouse = static_cast<QMouseEvent*>(event);
    if (mouse->button() == Qt::LeftButton && (mouse->position() - press_).manhattanLength() < 4) {
      if (const auto config = configAt(mouse->position())) emit loadRequested(*config);
    }
  }
  return QWidget::eventFilter(watched, event);
}

bool RdPanel::exportResults(const QString& path, QString* error) const {
  QString out;
  QTextStream s(&out);
  s << "series,codec,params,bits_per_element,kl,kl_lo,kl_hi,top1,top1_lo,top1_hi,delta_ppl_pct,"
       "delta_ppl_lo,delta_ppl_hi,scored_tokens,context_tokens\n";
  for (const auto& series : series_) {
    for (const auto& c : series.configs) {
      for (const auto& r : points_) {
        if (key(r.config) != key(c)) continue;
        QStringList params;
        for (const auto& [k, v] : r.config.params) params << qs(k) + QLatin1Char('=') + qs(v);
        const auto& i = r.intervals;
        s << '"' << series.label << "\"," << qs(r.config.codec) << ",\"" << params.join(QLatin1Char(';'))
          << "\"," << r.bits_per_element << ',' << r.kl << ',' << i.kl.lo << ',' << i.kl.hi << ','
          << r.top1_agreement << ',' << i.top1.lo << ',' << i.top1.hi << ',' << r.delta_ppl_pct << ','
          << i.delta_ppl_pct.lo << ',' << i.delta_ppl_pct.hi << ',' << r.continuation_tokens << ','
          << r.context_tokens << '\n';
      }
    }
  }
  const QByteArray bytes = out.toUtf8();
  try {
    write_file_atomically(path.toStdString(), bytes.constData(), std::size_t(bytes.size()));
  } catch (const Error& e) {
    if (error) *error = QString::fromUtf8(e.what());
    return false;
  }
  return true;
}

}  // namespace kvscope::gui
