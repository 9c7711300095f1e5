// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

// The app's "Largest Cache to Decode" setting: the cap every decoder and
// reader applies to untrusted input (docs/hostile-input.md), stored in
// QSettings ("decode/maxElements", values; 0 = automatic: a quarter of this
// machine's memory) and applied process-wide through
// codec::set_default_max_elements.

class QMenu;
class QWidget;

namespace kvscope::gui {

/// Applies the saved setting (call once at startup, before any decode).
void apply_saved_decode_limit();

/// Adds "Largest Cache to Decode..." to `menu`: a dialog that edits, saves
/// and applies the setting.
void add_decode_limit_action(QMenu* menu, QWidget* parent);

}  // namespace kvscope::gui
