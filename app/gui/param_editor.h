// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QString>
#include <QWidget>
#include <functional>
#include <map>
#include <string>

#include "kvscope/codec/codec.h"

class QFormLayout;

namespace kvscope::gui {

/// Controls for one codec's parameters, generated from its own ParamSpecs:
/// ranges, defaults and help (as tooltips) come from core/codec. IntList
/// parameters (per-layer-group bins) get one spin box per element. Used by
/// the codec tuning panel and by the ladder editor for each level.
class ParamEditor : public QWidget {
  Q_OBJECT

 public:
  explicit ParamEditor(QWidget* parent = nullptr);

  /// Builds the controls of codec `codec` with the defaults for `shape` (null:
  /// the codec's shape-free defaults). With `keep_values`, parameters of the
  /// same name keep their current values. Emits nothing.
  /// Errors: Error(InvalidArgument) when the codec is unknown.
  void build(const std::string& codec, const kv::CacheShape* shape, bool keep_values);
  const std::string& codec() const { return codec_; }
  /// Removes every control (e.g. for a level whose codec is unknown).
  void clear();

  /// Every parameter's current value, in the codec's text form.
  codec::ParamSet values() const;
  /// The parameters whose value differs from the spec's default.
  codec::ParamSet changedValues() const;
  /// Sets one control from text; an IntList grows or shrinks to the number of
  /// elements given. Emits changed() (unless `quiet`). False if there is no
  /// such parameter or the text does not parse.
  bool setValue(const QString& name, const QString& value, bool quiet = false);
  bool has(const std::string& name) const { return controls_.count(name) != 0; }

 signals:
  /// A control changed (by the user or setValue()).
  void changed();

 private:
  struct Control {
    std::function<QString()> get;
    std::function<bool(const QString&)> set;
    QWidget* widget = nullptr;
    std::string default_value;
  };
  QWidget* makeControl(const codec::ParamSpec& spec, Control& c);

  QFormLayout* form_;
  std::string codec_;
  std::map<std::string, Control> controls_;
};

/// Checks a configuration against the codec's ParamSpecs without encoding:
/// known codec, known parameter names, values that parse and lie in range.
/// Returns an empty string when valid, else a message naming the parameter.
std::string checkConfig(const codec::CodecConfig& config, const kv::CacheShape* shape);

}  // namespace kvscope::gui
