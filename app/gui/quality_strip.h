// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <QString>
#include <QWidget>
#include <vector>

namespace kvscope::gui {

/// A one-line KL scale (log, 1e-6 to 1 nats) under the codec panel's
/// quality readout: the current settings' KL as a dot with its bootstrap
/// interval as a bar, and reference marks (e.g. int8 and int4 at their
/// defaults, once measured) as labelled ticks, so a retune shows at a glance
/// whether it moved the quality beyond the uncertainty.
class QualityStrip : public QWidget {
  Q_OBJECT

 public:
  struct Mark {
    QString label;
    double kl = 0;
  };

  explicit QualityStrip(QWidget* parent = nullptr);

  /// The current value and interval (nats); `stale` draws it hollow (a newer
  /// measurement is running).
  void setCurrent(double kl, double lo, double hi, bool stale = false);
  void clearCurrent();
  void setStale(bool stale);
  void setMarks(std::vector<Mark> marks);
  bool hasCurrent() const { return has_current_; }
  /// Horizontal pixel of a KL value (exposed for tests).
  double xOf(double kl) const;

  QSize sizeHint() const override;
  QSize minimumSizeHint() const override;

 protected:
  void paintEvent(QPaintEvent* event) override;

 private:
  bool has_current_ = false, stale_ = false;
  double kl_ = 0, lo_ = 0, hi_ = 0;
  std::vector<Mark> marks_;
};

}  // namespace kvscope::gui
