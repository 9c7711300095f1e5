// SPDX-License-Identifier: GPL-3.0-or-later
#include "help_text.h"

#include <QCoreApplication>

namespace kvscope::gui::help {

namespace {
constexpr Concept kAll[] = {Concept::KeysValues,     Concept::Heatmap,     Concept::Anchor, Concept::Delta,
                            Concept::Bins,           Concept::LayerGroups, Concept::Cdf,    Concept::Entropy,
                            Concept::BitsPerElement, Concept::Level,       Concept::Slo};
QString tr(const char* s) {
  return QCoreApplication::translate("kvscope::help", s);
}
}  // namespace

QString title(Concept c) {
  switch (c) {
    case Concept::KeysValues:
      return tr("Keys and values (the KV cache)");
    case Concept::Heatmap:
      return tr("Token-by-channel heatmap");
    case Concept::Anchor:
      return tr("Anchor token");
    case Concept::Delta:
      return tr("Delta");
    case Concept::Bins:
      return tr("Bins (quantization levels)");
    case Concept::LayerGroups:
      return tr("Layer groups");
    case Concept::Cdf:
      return tr("CDF (symbol table)");
    case Concept::Entropy:
      return tr("Entropy");
    case Concept::BitsPerElement:
      return tr("Bits per element");
    case Concept::Level:
      return tr("Level (ladder rung)");
    case Concept::Slo:
      return tr("SLO (service-level objective)");
  }
  return {};
}

QString text(Concept c) {
  switch (c) {
    case Concept::KeysValues:
      return tr(
          "For every token and layer the model stores a key vector (what attention matches "
          "against) and a value vector (what it reads). Reusing a context means shipping these "
          "instead of recomputing them: for SmolLM2-135M that is 30 layers x 2 x 192 numbers per "
          "token, 23 KB at fp16.");
    case Concept::Heatmap:
      return tr(
          "Each column is a token, each row a channel (one dimension of one KV head). Smooth "
          "horizontal stripes mean nearby tokens have similar values (token locality); bright "
          "rows are outlier channels with a much wider range than the rest.");
    case Concept::Anchor:
      return tr(
          "CacheGen splits the context into groups of about ten consecutive tokens. The first "
          "token of a group, the anchor, is encoded on its own; the others are encoded as their "
          "difference to it, so all tokens of a group decode in parallel.");
    case Concept::Delta:
      return tr(
          "The difference between a token's values and a reference token's (the group's anchor, "
          "or the previous token). Where nearby tokens are similar, deltas are concentrated "
          "near zero and need fewer bits than the raw values; where they are not (often in the "
          "first layers), deltas cost more, which is why cachegen's delta=auto decides per "
          "channel. Help > How To shows which holds for the loaded cache.");
    case Concept::Bins:
      return tr(
          "How many quantization levels a value is rounded to. More bins: smaller rounding error "
          "but more bits per symbol. Halving the bins saves about one bit per value before "
          "entropy coding.");
    case Concept::LayerGroups:
      return tr(
          "Shallow layers matter more for output quality than deep ones, so CacheGen gives each "
          "group of consecutive layers its own bin count, separately for keys and values: fine "
          "bins early, coarse bins late.");
    case Concept::Cdf:
      return tr(
          "Cumulative distribution of the quantized symbols of one (layer, K|V, channel). The "
          "arithmetic coder uses it to give frequent symbols short codes. The table is shipped "
          "with the data, so it counts towards the size.");
    case Concept::Entropy:
      return tr(
          "The average information per symbol, in bits: the lower bound an entropy coder can "
          "reach for symbols with this distribution. Narrow distributions (deltas, few bins) "
          "have low entropy.");
    case Concept::BitsPerElement:
      return tr(
          "Encoded bytes x 8 divided by the number of values in the cache, with every header "
          "and table included. fp16 is 16; the int8 baseline is a little over 8.");
    case Concept::Level:
      return tr(
          "One rung of the streaming ladder: the same chunk encoded with coarser or finer bins. "
          "The streamer picks, chunk by chunk, the finest level that still arrives in time; "
          "if none does it sends the text and the receiver recomputes the KV cache.");
    case Concept::Slo:
      return tr(
          "The time budget for loading the whole context (transfer plus decode). The streamer "
          "adapts the level of each chunk to the measured bandwidth to meet it.");
  }
  return {};
}

QString html() {
  QString out = QStringLiteral("<h2>%1</h2>").arg(tr("Concepts"));
  for (Concept c : kAll)
    out += QStringLiteral("<h3>%1</h3><p>%2</p>").arg(title(c).toHtmlEscaped(), text(c).toHtmlEscaped());
  return out;
}

}  // namespace kvscope::gui::help
