// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <vector>

namespace kvscope::gui {

/// The channel weights the model measured during the prefill that made a
/// cache (model::ChannelWeights, copied here so that the parts of the app
/// built without the model runtime can hold them): [layer][kv_head * head_dim]
/// floats each. What the app's calibration builds cachegen's channel
/// weighting from (docs/bitstream.md section 4.2).
struct MeasuredChannelWeights {
  std::vector<float> key, value;
};

}  // namespace kvscope::gui
