// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

// The workspace file (.kvscope): what the window saves and restores, as a
// plain value with its JSON schema and validation, testable without a window.
// Demo scenarios (resources/scenarios/*.kvscope) are workspaces too, usually
// holding only their "stream" part.
//
// Schema (JSON object; every part but "format" optional):
//   "format": "kvscope-workspace", "version": 1
//   "model": path of the model file or folder
//   "context": {"name": string, "text": string}
//   "codec": {"name": registry name, "params": {name: value as text}}
//   "stream": {"profile": {"kind": "constant" | "piecewise" | "per_chunk_random",
//                          "name", "description", "points": [[time_s, mbps], ...],
//                          "min_mbps", "max_mbps", "seed": decimal string},
//              "slo_s": number, "chunk_tokens": integer,
//              "ladder": a shipped ladder's name, or a ladder object (resources/ladders format)}

#include <QByteArray>
#include <QString>
#include <optional>

#if KVSCOPE_GUI_HAVE_CODECS
#include "kvscope/codec/codec.h"
#endif
#if KVSCOPE_GUI_HAVE_STREAM
#include "kvscope/stream/ladder.h"
#include "kvscope/stream/profile.h"
#endif

namespace kvscope::gui {

/// Accepted SLO (seconds) and chunk size (tokens), here and in the streaming panel.
inline constexpr double kMinSloSeconds = 0.01, kMaxSloSeconds = 3600;
inline constexpr int kMinChunkTokens = 16, kMaxChunkTokens = 65536;

/// Everything a workspace file holds. Absent parts stay empty.
struct Workspace {
  QString model;
  std::optional<QString> context_name, context_text;
#if KVSCOPE_GUI_HAVE_CODECS
  std::optional<codec::CodecConfig> codec;
#endif
#if KVSCOPE_GUI_HAVE_STREAM
  std::optional<stream::BandwidthProfile> profile;
  std::optional<double> slo_s;
  std::optional<int> chunk_tokens;
  QString ladder_file;                   ///< a shipped ladder by name (older workspaces)
  std::optional<stream::Ladder> ladder;  ///< an embedded ladder
#endif
};

/// Parses and validates a workspace document: the format tag, every field's
/// type and range, the codec against its ParamSpecs, the bandwidth trace and
/// the ladder (validateLadder without a cache). Throws Error(Format) with a
/// message naming the first bad field ("stream.slo_s: ..."); nothing is
/// half-parsed.
Workspace parseWorkspace(const QByteArray& json);

/// Reads and parses a workspace file. Throws Error(Io) or Error(Format) with
/// a message that starts with the path.
Workspace readWorkspace(const QString& path);

/// The document saveWorkspace writes (indented JSON).
QByteArray workspaceJson(const Workspace& workspace);

}  // namespace kvscope::gui
