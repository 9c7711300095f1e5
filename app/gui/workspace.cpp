// SPDX-License-Identifier: GPL-3.0-or-later
#include "workspace.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <cmath>
#include <filesystem>
#include <string>

#include "kvscope/common/error.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "param_editor.h"
#endif
#if KVSCOPE_GUI_HAVE_STREAM
#include "ladder_editor.h"
#endif

namespace kvscope::gui {

namespace {

constexpr const char* kFormat = "kvscope-workspace";

[[noreturn]] void bad(const std::string& message) {
  throw Error(ErrorCode::Format, message);
}

QString qs(const std::string& s) {
  return QString::fromStdString(s);
}

QJsonObject objectAt(const QJsonObject& o, const char* key, const char* where) {
  const QJsonValue v = o.value(QLatin1String(key));
  if (!v.isUndefined() && !v.isObject()) bad(std::string(where) + ": must be an object");
  return v.toObject();
}

QString stringAt(const QJsonObject& o, const char* key, const char* where) {
  const QJsonValue v = o.value(QLatin1String(key));
  if (!v.isUndefined() && !v.isString()) bad(std::string(where) + ": must be a string");
  return v.toString();
}

#if KVSCOPE_GUI_HAVE_STREAM
stream::BandwidthProfile parseProfile(const QJsonObject& prof) {
  const QString kind = stringAt(prof, "kind", "stream.profile.kind");
  stream::BandwidthProfile bp;
  if (kind == QLatin1String("constant") || kind == QLatin1String("piecewise")) {
    std::vector<stream::ProfilePoint> pts;
    for (const QJsonValue& v : prof.value(QStringLiteral("points")).toArray()) {
      const QJsonArray a = v.toArray();
      if (a.size() != 2 || !a[0].isDouble() || !a[1].isDouble())
        bad("stream.profile.points: each point must be [time_s, mbps]");
      pts.push_back({a[0].toDouble(), a[1].toDouble()});
    }
    if (kind == QLatin1String("constant")) {
      if (pts.size() != 1) bad("stream.profile: a constant profile has one point");
      bp = stream::BandwidthProfile::constant(pts[0].mbps);
    } else {
      bp = stream::BandwidthProfile::piecewise(std::move(pts));
    }
  } else if (kind == QLatin1String("per_chunk_random")) {
    bool ok = false;
    const std::uint64_t seed = prof.value(QStringLiteral("seed")).toString().toULongLong(&ok);
    if (!ok) bad("stream.profile.seed: not an unsigned integer");
    bp = stream::BandwidthProfile::per_chunk_random(prof.value(QStringLiteral("min_mbps")).toDouble(),
                                                    prof.value(QStringLiteral("max_mbps")).toDouble(), seed);
  } else {
    bad("stream.profile.kind: unknown kind \"" + kind.toStdString() + "\"");
  }
  bp.set_name(stringAt(prof, "name", "stream.profile.name").toStdString());
  bp.set_description(stringAt(prof, "description", "stream.profile.description").toStdString());
  return bp;
}

QJsonObject profileJson(const stream::BandwidthProfile& bp) {
  QJsonObject prof;
  const auto kind = bp.kind();
  prof[QStringLiteral("kind")] = kind == stream::BandwidthProfile::Kind::Constant ? QStringLiteral("constant")
                                 : kind == stream::BandwidthProfile::Kind::Piecewise
                                     ? QStringLiteral("piecewise")
                                     : QStringLiteral("per_chunk_random");
  prof[QStringLiteral("name")] = qs(bp.name());
  prof[QStringLiteral("description")] = qs(bp.description());
  QJsonArray points;
  for (const auto& pt : bp.points()) points.append(QJsonArray{pt.time_s, pt.mbps});
  prof[QStringLiteral("points")] = points;
  prof[QStringLiteral("min_mbps")] = bp.min_mbps();
  prof[QStringLiteral("max_mbps")] = bp.max_mbps();
  prof[QStringLiteral("seed")] = QString::number(bp.seed());  // 64-bit: a double would round it
  return prof;
}

void parseStream(const QJsonObject& st, Workspace& w) {
  if (const QJsonObject prof = objectAt(st, "profile", "stream.profile"); !prof.isEmpty()) {
    try {
      w.profile = parseProfile(prof);
    } catch (const Error& e) {
      bad(std::string("bad bandwidth profile: ") + e.what());
    }
  }
  if (st.contains(QStringLiteral("slo_s"))) {
    const QJsonValue v = st.value(QStringLiteral("slo_s"));
    if (!v.isDouble() || v.toDouble() < kMinSloSeconds || v.toDouble() > kMaxSloSeconds)
      bad("stream.slo_s: must be a number of seconds in [" + std::to_string(kMinSloSeconds) + ", " +
          std::to_string(kMaxSloSeconds) + "]");
    w.slo_s = v.toDouble();
  }
  if (st.contains(QStringLiteral("chunk_tokens"))) {
    const QJsonValue v = st.value(QStringLiteral("chunk_tokens"));
    const double d = v.toDouble();
    if (!v.isDouble() || d != std::floor(d) || d < kMinChunkTokens || d > kMaxChunkTokens)
      bad("stream.chunk_tokens: must be an integer in [" + std::to_string(kMinChunkTokens) + ", " +
          std::to_string(kMaxChunkTokens) + "]");
    w.chunk_tokens = static_cast<int>(d);
  }
  const QJsonValue ladder = st.value(QStringLiteral("ladder"));
  if (ladder.isString()) {
    w.ladder_file = ladder.toString();
    const auto file = stream::ladder_dir() / (w.ladder_file.toStdString() + ".json");
    if (w.ladder_file.isEmpty() || w.ladder_file.contains(QLatin1Char('/')) || !std::filesystem::exists(file))
      bad("stream.ladder: unknown ladder \"" + w.ladder_file.toStdString() + "\"");
  } else if (ladder.isObject()) {
    const std::string text = QJsonDocument(ladder.toObject()).toJson().toStdString();
    stream::Ladder l;
    try {
      l = stream::parse_ladder(text, "stream.ladder");
    } catch (const Error& e) {
      bad(e.what());
    }
    if (const QString problem = validateLadder(l, nullptr); !problem.isEmpty())
      bad("stream.ladder: " + problem.toStdString());
    w.ladder = std::move(l);
  } else if (!ladder.isUndefined()) {
    bad("stream.ladder: must be a ladder name or a ladder object");
  }
}
#endif

}  // namespace

Workspace parseWorkspace(const QByteArray& json) {
  QJsonParseError parse_error;
  const QJsonDocument doc = QJsonDocument::fromJson(json, &parse_error);
  if (doc.isNull()) bad("not a KVScope workspace (" + parse_error.errorString().toStdString() + ")");
  const QJsonObject root = doc.object();
  if (root.value(QStringLiteral("format")).toString() != QLatin1String(kFormat))
    bad("not a KVScope workspace (missing format \"kvscope-workspace\")");
  Workspace w;
  w.model = stringAt(root, "model", "model");
  if (root.contains(QStringLiteral("context"))) {
    const QJsonObject context = objectAt(root, "context", "context");
    w.context_name = stringAt(context, "name", "context.name");
    w.context_text = stringAt(context, "text", "context.text");
  }
#if KVSCOPE_GUI_HAVE_CODECS
  if (const QJsonObject c = objectAt(root, "codec", "codec"); !c.isEmpty()) {
    codec::CodecConfig cfg;
    cfg.codec = stringAt(c, "name", "codec.name").toStdString();
    const QJsonObject params = objectAt(c, "params", "codec.params");
    for (auto it = params.begin(); it != params.end(); ++it) {
      if (!it.value().isString()) bad("codec.params." + it.key().toStdString() + ": must be a string");
      cfg.params[it.key().toStdString()] = it.value().toString().toStdString();
    }
    if (const std::string problem = checkConfig(cfg, nullptr); !problem.empty()) bad("codec: " + problem);
    w.codec = std::move(cfg);
  }
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  parseStream(objectAt(root, "stream", "stream"), w);
#endif
  return w;
}

Workspace readWorkspace(const QString& path) {
  QFile file(path);
  if (!file.open(QIODevice::ReadOnly))
    throw Error(ErrorCode::Io, path.toStdString() + ": cannot open: " + file.errorString().toStdString());
  try {
    return parseWorkspace(file.readAll());
  } catch (const Error& e) {
    throw Error(e.code(), path.toStdString() + ": " + e.what());
  }
}

QByteArray workspaceJson(const Workspace& w) {
  QJsonObject root;
  root[QStringLiteral("format")] = QLatin1String(kFormat);
  root[QStringLiteral("version")] = 1;
  root[QStringLiteral("model")] = w.model;
  if (w.context_name || w.context_text) {
    QJsonObject context;
    context[QStringLiteral("name")] = w.context_name.value_or(QString());
    context[QStringLiteral("text")] = w.context_text.value_or(QString());
    root[QStringLiteral("context")] = context;
  }
#if KVSCOPE_GUI_HAVE_CODECS
  if (w.codec) {
    QJsonObject params;
    for (const auto& [k, v] : w.codec->params) params[qs(k)] = qs(v);
    root[QStringLiteral("codec")] =
        QJsonObject{{QStringLiteral("name"), qs(w.codec->codec)}, {QStringLiteral("params"), params}};
  }
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  QJsonObject st;
  if (w.profile) st[QStringLiteral("profile")] = profileJson(*w.profile);
  if (w.slo_s) st[QStringLiteral("slo_s")] = *w.slo_s;
  if (w.chunk_tokens) st[QStringLiteral("chunk_tokens")] = *w.chunk_tokens;
  if (w.ladder)
    st[QStringLiteral("ladder")] =
        QJsonDocument::fromJson(QByteArray::fromStdString(stream::ladder_to_json(*w.ladder))).object();
  else if (!w.ladder_file.isEmpty())
    st[QStringLiteral("ladder")] = w.ladder_file;
  if (!st.isEmpty()) root[QStringLiteral("stream")] = st;
#endif
  return QJsonDocument(root).toJson();
}

}  // namespace kvscope::gui
