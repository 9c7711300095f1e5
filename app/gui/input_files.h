// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

// What the window can open, told apart by content where it can be (a file's
// first bytes) and by suffix otherwise, and the readers of the files that
// become a cache or a context. Qt-free in what it returns; no window needed.

#include <QString>
#include <filesystem>
#include <string>

#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::gui {

enum class InputKind {
  Model,      ///< .gguf file, or a folder (Hugging Face layout)
  RawCache,   ///< safetensors KV cache (io::save_cache)
  Hdf5,       ///< KVScope HDF5 export (docs/hdf5-format.md)
  Bitstream,  ///< KVScope bitstream, "KVSC" magic (docs/bitstream.md)
  Workspace,  ///< .kvscope
  Text,       ///< anything else: a context
};

/// Decides how to open `path`: magic bytes first ("GGUF", "KVSC", the HDF5
/// signature after KVScope's 512-byte user block or at 0), then the suffix.
/// Never throws; an unreadable file is judged by its suffix (its reader then
/// reports the problem).
InputKind classifyInput(const std::filesystem::path& path);

/// Loads a KV cache from a raw cache, an HDF5 export (its first level,
/// decoded) or a bitstream, as `kind` says. `description` receives a short
/// note of what was decoded (e.g. "cachegen bitstream, 1.9 bits/element").
/// Throws Error naming the file: Io, Format, Checksum, Unsupported (this
/// build has no HDF5), Cancelled.
kv::KVCache loadCache(const std::filesystem::path& path, InputKind kind, const ProgressFn& progress = {},
                      std::string* description = nullptr);

/// Reads a context text file. Throws Error(Format) naming the file when it
/// holds binary data (NUL bytes or other control characters) or is not valid
/// UTF-8 (the byte offset of the first bad sequence is given), Error(Io)
/// when unreadable. A UTF-8 byte-order mark is dropped.
QString readContextText(const std::filesystem::path& path);

/// Checks in-memory bytes as readContextText does; `name` labels messages.
QString decodeContextText(const std::string& bytes, const std::string& name);

}  // namespace kvscope::gui
