#include "quality_panel.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include "job_runner.h"
#include "kvscope/eval/report.h"
#include "plot_widget.h"
#include "session.h"

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}
QString paramsText(const codec::ParamSet& p) {
  QStringList parts;
  for (const auto& [k, v] : p) parts << qs(k) + QLatin1Char('=') + qs(v);
  return parts.join(QStringLiteral("; "));
}
bool sameConfig(const codec::CodecConfig& a, const codec::CodecConfig& b) {
  return a.codec == b.codec && a.params == b.params;
}
}  // namespace

QualityPanel::QualityPanel(Session* session, std::function<codec::CodecConfig()> current_config,
                           QWidget* parent)
    : QWidget(parent),
      session_(session),
      current_config_(std::move(current_config)),
      runner_(std::make_unique<JobRunner>(QStringLiteral("quality"))) {
  evaluate_ = new QPushButton(tr("Evaluate current config"));
  evaluate_->setObjectName(QStringLiteral("evaluateButton"));
  evaluate_->setToolTip(
      tr("Decode the encoded cache, let the model continue the context from it and compare "
         "with continuing from the original fp16 cache (perplexity, top-1, KL, greedy match)."));
  sweep_ = new QPushButton(tr("Sweep all codecs"));
  sweep_->setToolTip(tr("Every codec at its default parameters, plus the current configuration."));
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setEnabled(false);
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  status_ = new QLabel(tr("Quality is measured on demand: it reruns the model on the continuation."));
  status_->setWordWrap(true);

  plot_ = new PlotWidget;
  plot_->setObjectName(QStringLiteral("qualityPlot"));
  plot_->xAxis->setLabel(tr("bits per element"));
  plot_->yAxis->setLabel(tr("perplexity change (%)"));
  points_ = plot_->addGraph();
  points_->setName(tr("evaluated"));
  points_->setLineStyle(QCPGraph::lsNone);
  current_ = plot_->addGraph();
  current_->setName(tr("current config"));
  current_->setLineStyle(QCPGraph::lsNone);
  plot_->legend->setVisible(true);
  auto recolour = [this] {
    points_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, plot_->seriesColor(0), 7));
    current_->setScatterStyle(
        QCPScatterStyle(QCPScatterStyle::ssStar, QPen(plot_->seriesColor(1), 2), Qt::NoBrush, 14));
    plot_->replot(QCustomPlot::rpQueuedReplot);
  };
  connect(plot_, &PlotWidget::paletteApplied, this, recolour);
  recolour();

  table_ = new QTableWidget(0, 10);
  table_->setObjectName(QStringLiteral("qualityTable"));
  table_->setHorizontalHeaderLabels({tr("context"), tr("codec"), tr("params"), tr("bits/elem"), tr("x fp16"),
                                     tr("x int8"), tr("Δppl %"), tr("top-1"), tr("KL"), tr("greedy")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSortingEnabled(true);

  auto* buttons = new QHBoxLayout;
  buttons->addWidget(evaluate_);
  buttons->addWidget(sweep_);
  buttons->addWidget(cancel_);
  buttons->addWidget(progress_, 1);
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->addWidget(plot_);
  splitter->addWidget(table_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(buttons);
  layout->addWidget(status_);
  layout->addWidget(splitter, 1);

  connect(evaluate_, &QPushButton::clicked, this, &QualityPanel::evaluateCurrent);
  connect(sweep_, &QPushButton::clicked, this, &QualityPanel::sweepCodecs);
  connect(cancel_, &QPushButton::clicked, runner_.get(), &JobRunner::cancel);
  connect(runner_.get(), &JobRunner::busyChanged, this, [this](bool busy) {
    cancel_->setEnabled(busy);
    if (!busy) progress_->setValue(0);
  });
  connect(runner_.get(), &JobRunner::progress, this, [this](double f, const QString& stage) {
    progress_->setValue(static_cast<int>(f * 1000));
    status_->setText(stage);
  });
  connect(runner_.get(), &JobRunner::failed, this, [this](const QString&, const QString& message) {
    status_->setText(tr("Evaluation failed: %1").arg(message));
  });
  connect(runner_.get(), &JobRunner::cancelled, this,
          [this] { status_->setText(tr("Evaluation cancelled")); });
}

QualityPanel::~QualityPanel() {
  runner_.reset();
}

void QualityPanel::evaluateCurrent() {
  run(tr("Evaluating quality"), {current_config_()});
}

void QualityPanel::sweepCodecs() {
  std::vector<codec::CodecConfig> configs;
  for (const codec::Codec* c : codec::all_codecs()) configs.push_back({c->name(), {}});
  configs.push_back(current_config_());
  run(tr("Quality sweep"), std::move(configs));
}

void QualityPanel::run(const QString& title, std::vector<codec::CodecConfig> configs) {
  const auto model = session_->model();
  const QString text = session_->contextText();
  if (!model || text.trimmed().isEmpty()) {
    status_->setText(tr("Load a model and a context first."));
    return;
  }
  if (!evaluator_ || evaluator_model_ != model.get()) {
    // The evaluator's progress is fixed at construction; it forwards to the
    // slot each job sets, so references (one prefill per context) are reused.
    eval::EvalConfig config;
    config.continuation_tokens = 64;
    config.greedy_tokens = 16;
    auto slot = std::make_shared<ProgressFn>();
    config.progress = [slot](double f, std::string_view stage) { return !*slot || (*slot)(f, stage); };
    evaluator_ = std::make_shared<eval::Evaluator>(*model, config);
    progress_slot_ = slot;
    evaluator_model_ = model.get();
  }
  auto evaluator = evaluator_;
  auto slot = progress_slot_;
  const std::string utf8 = text.toStdString();
  const std::string label = session_->contextName().toStdString();
  runner_->start(title, [this, model, evaluator, slot, utf8, label, configs](const ProgressFn& progress) {
    // Jobs run one at a time on the runner's worker, so the slot has one user.
    *slot = progress;
    const eval::Reference& ref = evaluator->reference(utf8, label);
    auto results = eval::run_sweep(*evaluator, ref, configs);
    *slot = nullptr;
    return std::function<void()>([this, results] { addResults(results); });
  });
}

void QualityPanel::addResults(const std::vector<eval::QualityResult>& results) {
  table_->setSortingEnabled(false);
  for (const auto& r : results) {
    results_.push_back(r);
    const int row = table_->rowCount();
    table_->insertRow(row);
    auto num = [](double v, int digits) {
      auto* item = new QTableWidgetItem;
      item->setData(Qt::DisplayRole, QString::number(v, 'f', digits).toDouble());
      return item;
    };
    table_->setItem(row, 0, new QTableWidgetItem(qs(r.context)));
    table_->setItem(row, 1, new QTableWidgetItem(qs(r.config.codec)));
    table_->setItem(row, 2, new QTableWidgetItem(paramsText(r.config.params)));
    table_->setItem(row, 3, num(r.bits_per_element, 3));
    table_->setItem(row, 4, num(r.ratio_vs_fp16, 2));
    table_->setItem(row, 5, num(r.ratio_vs_int8, 2));
    table_->setItem(row, 6, num(r.delta_ppl_pct, 3));
    table_->setItem(row, 7, num(r.top1_agreement, 3));
    table_->setItem(row, 8, num(r.kl, 5));
    table_->setItem(row, 9, num(r.greedy_match, 3));
  }
  table_->setSortingEnabled(true);
  if (!results.empty())
    status_->setText(tr("%1 result(s); reference perplexity %2 over %3 continuation tokens")
                         .arg(results_.size())
                         .arg(results.back().ppl_ref, 0, 'f', 3)
                         .arg(results.back().continuation_tokens));
  redraw();
  emit evaluated();
}

void QualityPanel::markCurrent() {
  redraw();
}

void QualityPanel::redraw() {
  const codec::CodecConfig current = current_config_ ? current_config_() : codec::CodecConfig{};
  QVector<double> x, y, cx, cy;
  for (const auto& r : results_) {
    x << r.bits_per_element;
    y << r.delta_ppl_pct;
    // Results store the params they were given; match codec and the given params.
    if (r.config.codec == current.codec && (r.config.params.empty() || sameConfig(r.config, current)))
      cx << r.bits_per_element, cy << r.delta_ppl_pct;
  }
  points_->setData(x, y);
  current_->setData(cx, cy);
  plot_->refresh();
}

}  // namespace kvscope::gui
