// SPDX-License-Identifier: GPL-3.0-or-later
#include "decode_limit_setting.h"

#include <QInputDialog>
#include <QMenu>
#include <QSettings>
#include <QWidget>

#include "kvscope/codec/codec.h"

namespace kvscope::gui {

namespace {
const char* const kKey = "decode/maxElements";
}  // namespace

void apply_saved_decode_limit() {
  const qulonglong values = QSettings().value(QString::fromLatin1(kKey), 0).toULongLong();
  codec::set_default_max_elements(std::size_t(values));
}

void add_decode_limit_action(QMenu* menu, QWidget* parent) {
  menu->addAction(QObject::tr("Largest Cache to &Decode..."), parent, [parent] {
    codec::set_default_max_elements(0);
    const double automatic = double(codec::default_max_elements()) / 1e6;
    apply_saved_decode_limit();
    const double current = double(QSettings().value(QString::fromLatin1(kKey), 0).toULongLong()) / 1e6;
    bool ok = false;
    const double millions = QInputDialog::getDouble(
        parent, QObject::tr("Largest Cache to Decode"),
        QObject::tr("Bitstreams, HDF5 files and raw caches that declare more values than this are refused "
                    "before anything is allocated.\nMillions of values (0 = automatic: %1 million, a quarter "
                    "of this machine's memory):")
            .arg(automatic, 0, 'f', 0),
        current, 0.0, 1e6, 1, &ok);
    if (!ok) return;
    QSettings().setValue(QString::fromLatin1(kKey), qulonglong(millions * 1e6));
    apply_saved_decode_limit();
  });
}

}  // namespace kvscope::gui
