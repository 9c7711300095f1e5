// SPDX-License-Identifier: GPL-3.0-or-later
#include "stream_timeline.h"

#include <algorithm>
#include <cmath>

namespace kvscope::gui {

namespace {

QString qs(const std::string& s) {
  return QString::fromStdString(s);
}

}  // namespace

StreamTimeline::StreamTimeline(QWidget* parent) : PlotWidget(parent) {
  setObjectName(QStringLiteral("streamTimeline"));
  // Three stacked axis rects sharing one time axis: the default rect (which
  // holds the legend) is the bandwidth plot, two more below it.
  auto* margins = new QCPMarginGroup(this);
  const QString titles[] = {tr("Mbit/s"), tr("adaptive: level"), tr("policy")};
  for (int i = 0; i < 3; ++i) {
    QCPAxisRect* rect = i == 0 ? axisRect() : new QCPAxisRect(this);
    if (i > 0) plotLayout()->addElement(i, 0, rect);
    rect->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    rect->setRangeDrag(Qt::Horizontal);
    rect->setRangeZoom(Qt::Horizontal);
    rect->axis(QCPAxis::atLeft)->setLabel(titles[i]);
    QCPAxis* time = rect->axis(QCPAxis::atBottom);
    time->setTickLabels(i == 2);
    if (i == 2) time->setLabel(tr("time (s), one axis for all three plots; dashed: SLO"));
    rects_.push_back(rect);
    auto* slo = new QCPItemStraightLine(this);
    slo->setClipAxisRect(rect);
    for (auto* p : {slo->point1, slo->point2}) p->setAxes(time, rect->axis(QCPAxis::atLeft));
    slo_lines_.push_back(slo);
  }
  plotLayout()->setRowSpacing(2);
  plotLayout()->setRowStretchFactor(0, 1.0);
  plotLayout()->setRowStretchFactor(1, 1.1);
  plotLayout()->setRowStretchFactor(2, 1.2);
  // One x range: a pan or zoom in any plot moves the other two.
  for (int i = 0; i < 3; ++i) {
    connect(timeAxis(i), qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this,
            [this, i](const QCPRange& r) {
              if (syncing_) return;
              syncing_ = true;
              for (int j = 0; j < 3; ++j)
                if (j != i) timeAxis(j)->setRange(r);
              syncing_ = false;
            });
  }
  PlotWidget::setIntegerTicks(levelAxis());
  levelAxis()->setTicker(QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText));
  laneAxis()->setTicker(QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText));
  laneAxis()->setRangeReversed(true);  // adaptive on top

  trace_ = addGraph(timeAxis(0), bandwidthAxis());
  trace_->setName(tr("bandwidth trace"));
  trace_->setLineStyle(QCPGraph::lsStepLeft);
  estimate_ = addGraph(timeAxis(0), bandwidthAxis());
  estimate_->setName(tr("adaptive's estimate"));
  estimate_->setLineStyle(QCPGraph::lsStepLeft);
  // The legend sits in the bandwidth plot's top-right corner, in the
  // headroom the home view leaves above the highest rate: never over data.
  legend->setVisible(true);
  legend->setFillOrder(QCPLegend::foColumnsFirst);
  setHomeView([this] { homeView(); });
  connect(this, &QCustomPlot::beforeReplot, this, &StreamTimeline::fitLabels);
  auto recolour = [this] {
    trace_->setPen(QPen(seriesColor(0), 2));
    trace_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 7));
    estimate_->setPen(QPen(seriesColor(1), 1.5, Qt::DashLine));
    estimate_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDiamond, seriesColor(1), 7));
    for (auto* l : slo_lines_) l->setPen(QPen(seriesColor(1), 2, Qt::DashDotLine));
    replot(QCustomPlot::rpQueuedReplot);
  };
  connect(this, &PlotWidget::paletteApplied, this, recolour);
  applyPalette();
  recolour();
  setHoverTextAt([this](const QPoint& pos) -> QString {
    if (levelRect()->rect().contains(pos))
      return chunkExplanation(timeAxis(1)->pixelToCoord(pos.x()), levelAxis()->pixelToCoord(pos.y()));
    if (lanesRect()->rect().contains(pos)) {
      const int lane = int(std::lround(laneAxis()->pixelToCoord(pos.y())));
      const double t = timeAxis(2)->pixelToCoord(pos.x());
      if (lane < 0 || lane >= int(runs_.size())) return {};
      const auto& r = runs_[std::size_t(lane)].report;
      for (const auto& c : r.chunks)
        if (t >= c.send_start_s && t <= std::max(c.arrival_s, c.decode_end_s))
          return tr("%1, chunk %2 (tokens %3-%4) at %5: sent %6-%7 s, decoded by %8 s, %9 KB")
              .arg(qs(r.policy))
              .arg(c.index)
              .arg(c.begin)
              .arg(c.end)
              .arg(qs(c.level_name))
              .arg(c.send_start_s, 0, 'f', 2)
              .arg(c.arrival_s, 0, 'f', 2)
              .arg(c.decode_end_s, 0, 'f', 2)
              .arg(double(c.wire_bytes) / 1024.0, 0, 'f', 1);
      return tr("%1: loaded in %2 s").arg(qs(r.policy)).arg(r.ttft_s, 0, 'f', 3);
    }
    return {};
  });
}

void StreamTimeline::setProfile(const stream::BandwidthProfile& profile) {
  QVector<double> x, y;
  if (profile.kind() == stream::BandwidthProfile::Kind::PerChunkRandom) {
    bandwidthAxis()->setLabel(tr("Mbit/s (per chunk)"));
    trace_->setLineStyle(QCPGraph::lsStepLeft);
    // Per-chunk rates have no time; shown against the chunk's index in seconds units.
    for (int c = 0; c < 16; ++c) x << c, y << profile.mbps_at(0, c);
  } else {
    bandwidthAxis()->setLabel(tr("Mbit/s"));
    for (const auto& p : profile.points()) x << p.time_s, y << p.mbps;
    // The last rate holds on: draw it to the right edge of any run.
    if (!x.isEmpty()) x << std::max(x.back() + 1.0, 60.0), y << y.back();
  }
  trace_end_ = profile.kind() == stream::BandwidthProfile::Kind::PerChunkRandom
                   ? 16
                   : std::max(1.0, profile.span_s() * 1.2);
  trace_->setData(x, y, true);
  refresh();
}

void StreamTimeline::setLevels(const QStringList& names) {
  levels_ = names;
  auto ticker = levelAxis()->ticker().staticCast<QCPAxisTickerText>();
  ticker->clear();
  for (int i = 0; i < names.size(); ++i) ticker->addTick(i, names[i]);
  ticker->addTick(names.size(), tr("text"));
  clearRuns();
}

void StreamTimeline::setSlo(double seconds) {
  slo_ = seconds;
  for (int i = 0; i < 3; ++i) {
    slo_lines_[std::size_t(i)]->point1->setCoords(seconds, 0);
    slo_lines_[std::size_t(i)]->point2->setCoords(seconds, 1);
  }
  refresh();
}

void StreamTimeline::clearRuns() {
  for (auto* item : run_items_) removeItem(item);
  run_items_.clear();
  bar_labels_.clear();
  adaptive_.clear();
  runs_.clear();
  estimate_->data()->clear();
  laneAxis()->ticker().staticCast<QCPAxisTickerText>()->clear();
  refresh();
}

QCPItemRect* StreamTimeline::addBar(QCPAxisRect* rect, double start, double end, double lane, double half,
                                    int level, const QString& label) {
  QCPAxis* time = rect->axis(QCPAxis::atBottom);
  QCPAxis* value = rect->axis(QCPAxis::atLeft);
  auto* bar = new QCPItemRect(this);
  bar->setClipAxisRect(rect);
  for (auto* p : {bar->topLeft, bar->bottomRight}) p->setAxes(time, value);
  bar->topLeft->setCoords(start, lane + half);
  bar->bottomRight->setCoords(end, lane - half);
  const QColor colour = level == stream::kTextLevel ? seriesColor(1) : seriesColor(3 + std::max(0, level));
  bar->setBrush(colour);
  bar->setPen(QPen(colour.darker(130)));
  run_items_.push_back(bar);
  if (!label.isEmpty()) {
    auto* text = new QCPItemText(this);
    text->setClipAxisRect(rect);
    text->position->setAxes(time, value);
    text->setPositionAlignment(Qt::AlignLeft | Qt::AlignVCenter);
    text->position->setCoords(start, lane);
    text->setPadding(QMargins(3, 0, 0, 0));
    text->setText(label);
    text->setColor(palette().color(QPalette::Text));
    run_items_.push_back(text);
    bar_labels_.push_back({text, time, start, end});
  }
  return bar;
}

void StreamTimeline::addAdaptiveChunk(const stream::ChunkRecord& c, double slo_s) {
  (void)slo_s;
  adaptive_.push_back(c);
  const double lane = c.level == stream::kTextLevel ? double(levels_.size()) : double(c.level);
  addBar(levelRect(), c.send_start_s, c.arrival_s, lane, 0.38, c.level, qs(c.level_name));
  // Decoding after arrival: a thin bar in the same lane.
  if (c.decode_end_s > c.arrival_s) {
    QCPItemRect* decode = addBar(levelRect(), std::max(c.arrival_s, c.decode_start_s), c.decode_end_s,
                                 lane - 0.3, 0.06, c.level, QString());
    decode->setPen(Qt::NoPen);
  }
  estimate_->addData(c.send_start_s, c.estimated_mbps);
  refresh();
}

void StreamTimeline::addRun(const stream::StreamReport& r) {
  const int lane = int(runs_.size());
  laneAxis()->ticker().staticCast<QCPAxisTickerText>()->addTick(lane, qs(r.policy));
  double end = 0;
  for (const auto& c : r.chunks) {
    if (c.send_start_s < 0 || c.arrival_s < 0) continue;  // never sent (stopped or failed)
    addBar(lanesRect(), c.send_start_s, c.arrival_s, lane, 0.35, c.level, qs(c.level_name));
    end = std::max({end, c.arrival_s, c.decode_end_s});
  }
  const bool ok = r.status == stream::StreamStatus::Ok;
  const double ttft = ok ? r.ttft_s : end;
  const QColor verdict = r.slo_met ? QColor(40, 160, 60) : QColor(210, 50, 40);
  auto* mark = new QCPItemLine(this);
  mark->setClipAxisRect(lanesRect());
  for (auto* p : {mark->start, mark->end}) p->setAxes(timeAxis(2), laneAxis());
  mark->start->setCoords(ttft, lane - 0.45);
  mark->end->setCoords(ttft, lane + 0.45);
  mark->setPen(QPen(verdict, 3));
  run_items_.push_back(mark);
  // The verdict in a column at the right edge (the home view keeps it free of bars).
  auto* label = new QCPItemText(this);
  label->setClipAxisRect(lanesRect());
  label->position->setAxes(timeAxis(2), laneAxis());
  label->position->setAxisRect(lanesRect());
  label->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
  label->position->setCoords(1.0, lane);
  label->setPositionAlignment(Qt::AlignRight | Qt::AlignVCenter);
  label->setPadding(QMargins(4, 0, 6, 0));
  label->setBrush(palette().color(QPalette::Base));
  label->setColor(verdict);
  label->setText(
      ok ? tr("%1 s %2").arg(r.ttft_s, 0, 'f', 2).arg(r.slo_met ? tr("(SLO met)") : tr("(SLO missed)"))
         : tr("failed"));
  run_items_.push_back(label);
  runs_.push_back({r, label});
  refresh();
}

void StreamTimeline::setRunNote(int lane, const QString& note) {
  if (lane < 0 || lane >= int(runs_.size())) return;
  const auto& r = runs_[std::size_t(lane)].report;
  if (r.status != stream::StreamStatus::Ok) return;
  runs_[std::size_t(lane)].label->setText(tr("%1 s %2, %3")
                                              .arg(r.ttft_s, 0, 'f', 2)
                                              .arg(r.slo_met ? tr("(SLO met)") : tr("(SLO missed)"))
                                              .arg(note));
  replot(QCustomPlot::rpQueuedReplot);
}

QString StreamTimeline::chunkExplanation(double t, double lane_coord) const {
  const int lane = int(std::lround(lane_coord));
  for (const auto& c : adaptive_) {
    const int chunk_lane = c.level == stream::kTextLevel ? int(levels_.size()) : c.level;
    if (chunk_lane != lane || t < c.send_start_s || t > std::max(c.arrival_s, c.decode_end_s)) continue;
    QStringList lines;
    lines << tr("chunk %1 (tokens %2-%3) sent as %4 at %5 s")
                 .arg(c.index)
                 .arg(c.begin)
                 .arg(c.end)
                 .arg(qs(c.level_name))
                 .arg(c.send_start_s, 0, 'f', 2);
    lines << tr("throughput estimate %1 Mbit/s (from the chunks before it)").arg(c.estimated_mbps, 0, 'f', 1);
    lines << tr("predicted finish if this and every later chunk went at:");
    for (std::size_t l = 0; l < c.level_finish_s.size(); ++l) {
      const double f = c.level_finish_s[l];
      const QString name = l < std::size_t(levels_.size()) ? levels_[int(l)] : QString::number(l);
      lines << tr("  %1: %2 s %3%4")
                   .arg(name)
                   .arg(f, 0, 'f', 2)
                   .arg(f <= slo_ ? tr("meets") : tr("misses"))
                   .arg(int(l) == c.level
                            ? tr("  <- chosen (finest that meets the %1 s SLO)").arg(slo_, 0, 'f', 2)
                            : QString());
    }
    if (c.level == stream::kTextLevel) lines << tr("no level was predicted to meet the SLO: sent as text");
    lines << tr("arrived %1 s, decoded %2-%3 s, %4 KB")
                 .arg(c.arrival_s, 0, 'f', 2)
                 .arg(c.decode_start_s, 0, 'f', 2)
                 .arg(c.decode_end_s, 0, 'f', 2)
                 .arg(double(c.wire_bytes) / 1024.0, 0, 'f', 1);
    return lines.join(QLatin1Char('\n'));
  }
  return {};
}

void StreamTimeline::homeView() {
  // Up to three times the SLO: a run far beyond it (text recompute on a slow
  // machine) would squeeze every other run into a sliver; its lane still
  // says its time at the right edge.
  const double cap = 3 * slo_;
  double x_max = std::max(slo_ * 1.5, std::min(trace_end_, cap));
  for (const auto& r : runs_) x_max = std::max(x_max, std::min(r.report.ttft_s, cap));
  for (const auto& c : adaptive_) x_max = std::max(x_max, std::min(c.decode_end_s, cap));
  // Room on the right for the load-time labels.
  for (int i = 0; i < 3; ++i) timeAxis(i)->setRange(0, x_max * 1.3 + 1e-3);
  double rate = 1;
  for (auto it = trace_->data()->constBegin(); it != trace_->data()->constEnd(); ++it)
    rate = std::max(rate, it->value);
  for (auto it = estimate_->data()->constBegin(); it != estimate_->data()->constEnd(); ++it)
    rate = std::max(rate, it->value);
  bandwidthAxis()->setRange(0, rate * 1.35);  // headroom for the legend
  levelAxis()->setRange(-0.6, double(levels_.size()) + 0.6);
  laneAxis()->setRange(-0.6, std::max(3.0, double(runs_.size()) - 1) + 0.6);
}

void StreamTimeline::fitLabels() {
  // A chunk's label is shown only when its bar is wide enough to hold it, so
  // labels of short chunks never run into their neighbours.
  const QFontMetrics fm(font());
  for (const auto& b : bar_labels_) {
    const double px = b.time->coordToPixel(b.end) - b.time->coordToPixel(b.start);
    b.text->setVisible(px >= fm.horizontalAdvance(b.text->text()) + 6);
  }
}

}  // namespace kvscope::gui
