// SPDX-License-Identifier: GPL-3.0-or-later
#include "help_panel.h"

#include <QScrollBar>
#include <QUrl>

#include "help_text.h"
#include "on_screen.h"
#include "session.h"

namespace kvscope::gui {

namespace {

QString link(const QString& dock, const QString& text) {
  return QStringLiteral("<a href=\"kvscope:%1\">%2</a>").arg(dock, text.toHtmlEscaped());
}

QString num(double v, int digits = 2) {
  return QString::number(v, 'f', digits);
}

}  // namespace

HelpPanel::HelpPanel(Session* session, QWidget* parent) : QTextBrowser(parent), session_(session) {
  setObjectName(QStringLiteral("helpPanel"));
  setOpenLinks(false);
  connect(this, &QTextBrowser::anchorClicked, this, [this](const QUrl& url) {
    if (url.scheme() == QLatin1String("kvscope")) emit showPanel(url.path());
  });
  // Rebuilt while on screen only: a hidden tab catches up when picked.
  when_shown_ = new WhenShown(this, [this] {
    if (dirty_) rebuild();
  });
  connect(session_, &Session::cacheChanged, this, &HelpPanel::invalidate);
  rebuild();
}

#if KVSCOPE_GUI_HAVE_CODECS
void HelpPanel::setStages(std::shared_ptr<const codec::StageAnalysis> stages) {
  stages_ = std::move(stages);
  invalidate();
}
#endif

void HelpPanel::setStreamOutcomes(std::vector<StreamOutcome> outcomes) {
  outcomes_ = std::move(outcomes);
  invalidate();
}

QString HelpPanel::page() {
  if (dirty_) rebuild();
  return toPlainText();
}

void HelpPanel::invalidate() {
  dirty_ = true;
  when_shown_->request();
}

void HelpPanel::rebuild() {
  dirty_ = false;
  const auto cache = session_->cache();
  QString h;
  h +=
      tr("<h2>How to</h2><p>Each task names the panels it uses: click a link to bring the panel up. "
         "Statements in <i>italics</i> are computed from what is loaded now.</p>");
  if (cache && !cache->empty()) {
    const auto& s = cache->shape();
    h += tr("<p><i>Loaded: %1, %2 tokens, %3 layers x 2 x %4 KV heads x %5 dims (%6 values).</i></p>")
             .arg(session_->cacheSource().toHtmlEscaped())
             .arg(s.tokens)
             .arg(s.layers)
             .arg(s.kv_heads)
             .arg(s.head_dim)
             .arg(double(s.elements()), 0, 'g', 3);
  } else {
    h += tr("<p><i>No cache loaded yet: pick a context in %1 and Prefill (F5), or open a cache file "
            "(File &gt; Open KV Cache: .safetensors, the app's own .h5 exports, .kvc bitstreams).</i></p>")
             .arg(link(QStringLiteral("contextDock"), tr("Model and Context")));
  }

  // 1. Smallest setting under a KL target.
  h += tr("<h3>Find the smallest setting with KL under 0.01</h3><ol>"
          "<li>Open %1 and press <b>Every codec at defaults</b>: one point per codec, bits per element "
          "against KL (log scale).</li>"
          "<li>Pick <b>cachegen</b> and a parameter (e.g. <b>key_bins</b>) and <b>Add sweep</b>: each value "
          "becomes a labelled point on one line.</li>"
          "<li>The dashed line is the <b>KL target</b> (0.01 by default); the status line names the "
          "cheapest measured point under it. Click that point to load its settings into %2.</li>"
          "<li>%2 then shows its size and, under it, KL, top-1 and perplexity change with 95% intervals "
          "(recomputed after every edit): a change matters when the intervals no longer overlap.</li></ol>")
           .arg(link(QStringLiteral("rdDock"), tr("Rate–Distortion")),
                link(QStringLiteral("codecDock"), tr("Codec Tuning")));

  // 2. Shallow layers.
  h += tr("<h3>See why shallow layers matter</h3><ol>"
          "<li>In %1, with cachegen, note the KL under the size readout.</li>"
          "<li>Halve the <b>first</b> value of <b>key_bins</b> (the shallow layer group): the size drops a "
          "little, KL rises. Put it back and halve the <b>last</b> value instead: about the same bits saved, "
          "compare the KL.</li>"
          "<li>%2 shows where the bits go per layer (<b>Size per layer</b> tab) and %3 how each layer's "
          "values are spread (summary bars per layer).</li></ol>")
           .arg(link(QStringLiteral("codecDock"), tr("Codec Tuning")),
                link(QStringLiteral("codecDock"), tr("Codec Tuning")),
                link(QStringLiteral("distributionsDock"), tr("Distributions")));
#if KVSCOPE_GUI_HAVE_CODECS
  if (stages_ && cache && stages_->raw_entropy.per_layer.size() == std::size_t(cache->shape().layers) * 2) {
    const auto& raw = stages_->raw_entropy.per_layer;
    const auto& delta = stages_->delta_entropy.per_layer;
    const auto& fixed = stages_->quantized_fixed.per_layer;
    const int layers = cache->shape().layers;
    int cheaper = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) cheaper += delta[i] < raw[i];
    h += tr("<p><i>On this cache with the current cachegen settings: layer 0 keys are quantized to %1 bits "
            "(fixed length), layer %2 keys to %3 bits. Their symbols' entropy is %4 bits raw and %5 bits "
            "as anchor/deltas in layer 0, %6 and %7 in layer %2. Deltas are cheaper than raw symbols in "
            "%8 of %9 (layer, K|V) tensors, so token locality does not always pay: delta=auto codes each "
            "channel the cheaper way.</i></p>")
             .arg(num(fixed[0]))
             .arg(layers - 1)
             .arg(num(fixed[std::size_t(layers - 1) * 2]))
             .arg(num(raw[0]))
             .arg(num(delta[0]))
             .arg(num(raw[std::size_t(layers - 1) * 2]))
             .arg(num(delta[std::size_t(layers - 1) * 2]))
             .arg(cheaper)
             .arg(raw.size());
  } else {
    h +=
        tr("<p><i>Select cachegen in Codec Tuning to see, for this cache, the bits per layer and whether "
           "deltas beat raw symbols.</i></p>");
  }
#endif

  // 3. Streaming.
  h +=
      tr("<h3>Make adaptation meet an SLO</h3><ol>"
         "<li>Open %1. The default scenario (<b>adaptive-vs-int8</b>) starts on a slow link that recovers "
         "after a second; press <b>Run</b> (simulated clock, baselines on). <b>drop-mid-stream</b> shows the "
         "opposite: a drop the estimate sees late.</li>"
         "<li>One time axis runs through the three plots: the bandwidth trace with the estimate the "
         "policy used, the level the adaptive run chose per chunk, and one lane per policy. The dashed "
         "line is the SLO.</li>"
         "<li>Hover a chunk of the adaptive run: its throughput estimate and the finish predicted for "
         "every level, which is why that level was picked (the finest one predicted to meet the SLO).</li>"
         "<li>Lower the SLO or drag a bandwidth point down and run again; the table adds the quality each "
         "policy delivered (KL, top-1) next to its time to load.</li></ol>")
          .arg(link(QStringLiteral("streamDock"), tr("Streaming")));
  if (!outcomes_.empty()) {
    QStringList lines;
    for (const auto& o : outcomes_)
      lines << tr("%1 loaded in %2 s (%3)")
                   .arg(o.policy.toHtmlEscaped(), num(o.ttft_s))
                   .arg(o.slo_met ? tr("met the %1 s SLO").arg(num(o.slo_s))
                                  : tr("missed the %1 s SLO").arg(num(o.slo_s)));
    h += tr("<p><i>Last run: %1.</i></p>").arg(lines.join(QStringLiteral("; ")));
  }

  // 4. Files.
  h +=
      tr("<h3>Open, export, reuse</h3><ul>"
         "<li>File &gt; Open KV Cache takes raw caches (.safetensors), the app's own HDF5 exports (.h5) "
         "and .kvc bitstreams; so does the command line (<code>kvscope FILE</code>) and drag and drop.</li>"
         "<li>File &gt; Export Encoded Cache to HDF5 writes the current encoding with the model's "
         "SHA-256.</li>"
         "<li>Right-click any plot to export it (PNG, SVG, PDF) or its data (CSV); double-click resets "
         "its zoom. The heatmap zooms along tokens with the wheel.</li>"
         "<li>File &gt; Save Workspace keeps the context, codec settings and streaming scenario.</li></ul>");

  h += QStringLiteral("<hr>") + help::html();
  const int scroll = verticalScrollBar() ? verticalScrollBar()->value() : 0;
  setHtml(h);
  if (verticalScrollBar()) verticalScrollBar()->setValue(scroll);
}

}  // namespace kvscope::gui
