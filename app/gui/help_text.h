// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QString>

namespace kvscope::gui::help {

/// Concepts the app explains, in tooltips and in the Help pane.
enum class Concept {
  KeysValues,
  Heatmap,
  Anchor,
  Delta,
  Bins,
  LayerGroups,
  Cdf,
  Entropy,
  BitsPerElement,
  Level,
  Slo,
};

/// One short paragraph (plain text) explaining `c`, for tooltips.
QString text(Concept c);
/// Title of `c` ("Anchor token").
QString title(Concept c);
/// All concepts as one HTML page, for the Help pane.
QString html();

}  // namespace kvscope::gui::help
