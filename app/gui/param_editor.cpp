// SPDX-License-Identifier: GPL-3.0-or-later
#include "param_editor.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPointer>
#include <QSpinBox>
#include <QToolButton>
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "kvscope/common/error.h"

namespace kvscope::gui {

namespace {
QString qs(const std::string& s) {
  return QString::fromStdString(s);
}

int toInt(double v, int fallback) {
  return std::isfinite(v) ? static_cast<int>(std::clamp(v, -2.0e9, 2.0e9)) : fallback;
}

// Blocks the signals of a control and of every child (IntList rows hold
// several spin boxes, some of which a set() may delete: hence QPointer).
class DeepSignalBlocker {
 public:
  explicit DeepSignalBlocker(QWidget* w) {
    objects_.push_back(w);
    for (QObject* c : w->findChildren<QObject*>()) objects_.push_back(c);
    for (QObject* o : objects_) previous_.push_back(o->blockSignals(true));
  }
  ~DeepSignalBlocker() {
    for (std::size_t i = 0; i < objects_.size(); ++i)
      if (objects_[i]) objects_[i]->blockSignals(previous_[i]);
  }

 private:
  std::vector<QPointer<QObject>> objects_;
  std::vector<bool> previous_;
};

std::string trimmed(const std::string& s) {
  return QString::fromStdString(s).trimmed().toStdString();
}

bool parseInt(const std::string& text, long long* out) {
  bool ok = false;
  *out = QString::fromStdString(text).trimmed().toLongLong(&ok);
  return ok;
}
}  // namespace

ParamEditor::ParamEditor(QWidget* parent) : QWidget(parent) {
  form_ = new QFormLayout(this);
  form_->setContentsMargins(0, 0, 0, 0);
}

void ParamEditor::build(const std::string& codec_name, const kv::CacheShape* shape, bool keep_values) {
  const codec::Codec& codec = codec::find_codec(codec_name);  // throws on an unknown codec
  std::map<std::string, QString> previous;
  if (keep_values)
    for (const auto& [name, c] : controls_) previous[name] = c.get();
  clear();
  codec_ = codec_name;
  for (const codec::ParamSpec& spec : codec.params(shape)) {
    Control c;
    c.default_value = spec.default_value;
    QWidget* control = makeControl(spec, c);
    if (!control) continue;  // a parameter type this GUI does not know: the codec uses its default
    if (control->objectName().isEmpty()) control->setObjectName(qs(spec.name));
    control->setToolTip(qs(spec.help));
    auto* label = new QLabel(qs(spec.name));
    label->setToolTip(qs(spec.help));
    form_->addRow(label, control);
    c.widget = control;
    controls_[spec.name] = c;
    if (auto it = previous.find(spec.name); it != previous.end()) setValue(qs(spec.name), it->second, true);
  }
}

void ParamEditor::clear() {
  controls_.clear();
  while (form_->rowCount() > 0) form_->removeRow(0);
  codec_.clear();
}

QWidget* ParamEditor::makeControl(const codec::ParamSpec& spec, Control& c) {
  const QString help = qs(spec.help);
  switch (spec.type) {
    case codec::ParamSpec::Type::Int: {
      auto* box = new QSpinBox;
      box->setRange(toInt(spec.min, 0), toInt(spec.max, 1 << 30));
      box->setValue(qs(spec.default_value).toInt());
      connect(box, &QSpinBox::valueChanged, this, &ParamEditor::changed);
      c.get = [box] { return QString::number(box->value()); };
      c.set = [box](const QString& v) {
        bool ok = false;
        const int i = v.trimmed().toInt(&ok);
        if (ok) box->setValue(i);
        return ok;
      };
      return box;
    }
    case codec::ParamSpec::Type::Float: {
      auto* box = new QDoubleSpinBox;
      box->setDecimals(4);
      box->setRange(spec.min, spec.max);
      box->setSingleStep((spec.max - spec.min) / 100.0);
      box->setValue(qs(spec.default_value).toDouble());
      connect(box, &QDoubleSpinBox::valueChanged, this, &ParamEditor::changed);
      c.get = [box] { return QString::number(box->value(), 'g', 8); };
      c.set = [box](const QString& v) {
        bool ok = false;
        const double d = v.trimmed().toDouble(&ok);
        if (ok) box->setValue(d);
        return ok;
      };
      return box;
    }
    case codec::ParamSpec::Type::Bool: {
      auto* box = new QCheckBox;
      box->setChecked(spec.default_value == "true" || spec.default_value == "1");
      connect(box, &QCheckBox::toggled, this, &ParamEditor::changed);
      c.get = [box] { return box->isChecked() ? QStringLiteral("true") : QStringLiteral("false"); };
      c.set = [box](const QString& v) {
        const QString t = v.trimmed();
        const bool on = t == QLatin1String("true") || t == QLatin1String("1");
        if (!on && t != QLatin1String("false") && t != QLatin1String("0")) return false;
        box->setChecked(on);
        return true;
      };
      return box;
    }
    case codec::ParamSpec::Type::Choice: {
      auto* box = new QComboBox;
      for (const auto& choice : spec.choices) box->addItem(qs(choice));
      box->setCurrentText(qs(spec.default_value));
      connect(box, &QComboBox::currentIndexChanged, this, &ParamEditor::changed);
      c.get = [box] { return box->currentText(); };
      c.set = [box](const QString& v) {
        const int i = box->findText(v.trimmed());
        if (i >= 0) box->setCurrentIndex(i);
        return i >= 0;
      };
      return box;
    }
    case codec::ParamSpec::Type::Text: {
      auto* edit = new QLineEdit(qs(spec.default_value));
      connect(edit, &QLineEdit::editingFinished, this, &ParamEditor::changed);
      c.get = [edit] { return edit->text(); };
      c.set = [edit](const QString& v) {
        edit->setText(v);
        return true;
      };
      return edit;
    }
    case codec::ParamSpec::Type::IntList: {
      // One spin box per element (e.g. the bins of each layer group); + and -
      // add or drop the last element, since the number of groups is a choice too.
      auto* row = new QWidget;
      auto* row_layout = new QHBoxLayout(row);
      row_layout->setContentsMargins(0, 0, 0, 0);
      auto boxes = std::make_shared<std::vector<QSpinBox*>>();
      const QString name = qs(spec.name);
      const int lo = toInt(spec.min, 0), hi = toInt(spec.max, 1 << 30);
      // Adds a box at the end of the row (before the +/- buttons).
      auto add_box = [this, row_layout, boxes, name, lo, hi, help](int value) {
        auto* box = new QSpinBox;
        box->setRange(lo, hi);
        box->setValue(value);
        const int i = static_cast<int>(boxes->size());
        box->setToolTip(tr("%1, element %2: %3").arg(name).arg(i + 1).arg(help));
        box->setObjectName(name + QStringLiteral("_%1").arg(i));
        connect(box, &QSpinBox::valueChanged, this, &ParamEditor::changed);
        row_layout->insertWidget(i, box, 1);
        boxes->push_back(box);
      };
      auto resize_to = [boxes, add_box](int n, int fill) {
        while (static_cast<int>(boxes->size()) > n) {
          delete boxes->back();
          boxes->pop_back();
        }
        while (static_cast<int>(boxes->size()) < n) add_box(boxes->empty() ? fill : boxes->back()->value());
      };
      for (const QString& d : qs(spec.default_value).split(QLatin1Char(','), Qt::SkipEmptyParts))
        add_box(d.trimmed().toInt());
      auto* more = new QToolButton;
      more->setText(QStringLiteral("+"));
      more->setToolTip(tr("Add an element to %1").arg(name));
      auto* fewer = new QToolButton;
      fewer->setText(QStringLiteral("\u2212"));
      fewer->setToolTip(tr("Remove the last element of %1").arg(name));
      row_layout->addWidget(more);
      row_layout->addWidget(fewer);
      connect(more, &QToolButton::clicked, this, [this, boxes, resize_to, lo] {
        resize_to(static_cast<int>(boxes->size()) + 1, std::max(lo, 1));
        emit changed();
      });
      connect(fewer, &QToolButton::clicked, this, [this, boxes, resize_to, lo] {
        if (boxes->empty()) return;
        resize_to(static_cast<int>(boxes->size()) - 1, lo);
        emit changed();
      });
      c.get = [boxes] {
        QStringList parts;
        for (QSpinBox* b : *boxes) parts << QString::number(b->value());
        return parts.join(QLatin1Char(','));
      };
      c.set = [boxes, resize_to, lo, hi](const QString& v) {
        const QStringList parts = v.split(QLatin1Char(','), Qt::SkipEmptyParts);
        std::vector<int> values;
        for (const QString& p : parts) {
          bool ok = false;
          const int i = p.trimmed().toInt(&ok);
          if (!ok || i < lo || i > hi) return false;
          values.push_back(i);
        }
        resize_to(static_cast<int>(values.size()), lo);
        for (std::size_t i = 0; i < values.size(); ++i) (*boxes)[i]->setValue(values[i]);
        return true;
      };
      return row;
    }
  }
  return nullptr;
}

codec::ParamSet ParamEditor::values() const {
  codec::ParamSet out;
  for (const auto& [name, c] : controls_) out[name] = c.get().toStdString();
  return out;
}

codec::ParamSet ParamEditor::changedValues() const {
  codec::ParamSet out;
  for (const auto& [name, c] : controls_) {
    const std::string v = c.get().toStdString();
    if (v != c.default_value) out[name] = v;
  }
  return out;
}

bool ParamEditor::setValue(const QString& name, const QString& value, bool quiet) {
  auto it = controls_.find(name.toStdString());
  if (it == controls_.end()) return false;
  bool ok = false;
  {
    DeepSignalBlocker block(it->second.widget);  // one changed() for the whole value
    ok = it->second.set(value);
  }
  if (ok && !quiet) emit changed();
  return ok;
}

std::string checkConfig(const codec::CodecConfig& config, const kv::CacheShape* shape) {
  const codec::Codec* codec = nullptr;
  for (const codec::Codec* c : codec::all_codecs())
    if (c->name() == config.codec) codec = c;
  if (!codec) {
    std::string names;
    for (const codec::Codec* c : codec::all_codecs()) names += (names.empty() ? "" : ", ") + c->name();
    return "unknown codec '" + config.codec + "' (known: " + names + ")";
  }
  const auto specs = codec->params(shape);
  for (const auto& [name, value] : config.params) {
    auto spec = std::find_if(specs.begin(), specs.end(), [&](const auto& s) { return s.name == name; });
    const std::string where = "codec '" + config.codec + "' parameter '" + name + "'";
    if (spec == specs.end()) return "codec '" + config.codec + "' has no parameter '" + name + "'";
    const auto in_range = [&](double v) { return v >= spec->min && v <= spec->max; };
    const std::string range = "[" + QString::number(spec->min).toStdString() + ", " +
                              QString::number(spec->max).toStdString() + "]";
    switch (spec->type) {
      case codec::ParamSpec::Type::Int: {
        long long v = 0;
        if (!parseInt(value, &v)) return where + ": '" + value + "' is not an integer";
        if (!in_range(double(v))) return where + ": " + value + " is outside " + range;
        break;
      }
      case codec::ParamSpec::Type::Float: {
        bool ok = false;
        const double v = QString::fromStdString(value).trimmed().toDouble(&ok);
        if (!ok || !std::isfinite(v)) return where + ": '" + value + "' is not a number";
        if (!in_range(v)) return where + ": " + value + " is outside " + range;
        break;
      }
      case codec::ParamSpec::Type::Bool: {
        const std::string t = trimmed(value);
        if (t != "true" && t != "false" && t != "1" && t != "0" && t != "on" && t != "off" && t != "yes" &&
            t != "no")
          return where + ": '" + value + "' is not true/false";
        break;
      }
      case codec::ParamSpec::Type::Choice:
        if (std::find(spec->choices.begin(), spec->choices.end(), trimmed(value)) == spec->choices.end())
          return where + ": '" + value + "' is not one of its choices";
        break;
      case codec::ParamSpec::Type::Text:
        break;
      case codec::ParamSpec::Type::IntList:
        for (const QString& part :
             QString::fromStdString(value).split(QLatin1Char(','), Qt::SkipEmptyParts)) {
          long long v = 0;
          if (!parseInt(part.toStdString(), &v))
            return where + ": '" + value + "' is not a comma-separated integer list";
          if (!in_range(double(v))) return where + ": element " + std::to_string(v) + " is outside " + range;
        }
        break;
    }
  }
  return {};
}

}  // namespace kvscope::gui
