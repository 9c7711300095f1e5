// SPDX-License-Identifier: GPL-3.0-or-later
#include "input_files.h"

#include <QStringDecoder>
#include <algorithm>
#include <cstring>
#include <fstream>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/file_bytes.h"
#include "kvscope/io/raw_cache.h"
#if KVSCOPE_GUI_HAVE_CODECS
#include "kvscope/codec/codec.h"
#endif
#if KVSCOPE_GUI_HAVE_HDF5
#include "kvscope/io/hdf5_container.h"
#endif

namespace kvscope::gui {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

// The first `n` bytes at `offset` (fewer when the file is shorter or unreadable).
std::string peek(const std::filesystem::path& path, std::size_t offset, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(std::streamoff(offset));
  std::string out(n, '\0');
  in.read(out.data(), std::streamsize(n));
  out.resize(std::size_t(std::max<std::streamsize>(0, in.gcount())));
  return out;
}

constexpr char kHdf5Signature[] = "\x89HDF\r\n\x1a\n";

}  // namespace

InputKind classifyInput(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return InputKind::Model;
  const std::string head = peek(path, 0, 8);
  // HDF5 first: KVScope's exports start with a user block of their own
  // (whole-file checksum) before the HDF5 signature at 512.
  if (head == std::string(kHdf5Signature, 8) || peek(path, 512, 8) == std::string(kHdf5Signature, 8))
    return InputKind::Hdf5;
  if (head.starts_with("GGUF")) return InputKind::Model;
  if (head.starts_with("KVSC")) return InputKind::Bitstream;
  const std::string suffix = lower(path.extension().string());
  if (suffix == ".gguf") return InputKind::Model;
  if (suffix == ".safetensors") return InputKind::RawCache;
  if (suffix == ".h5" || suffix == ".hdf5") return InputKind::Hdf5;
  if (suffix == ".kvc") return InputKind::Bitstream;
  if (suffix == ".kvscope") return InputKind::Workspace;
  return InputKind::Text;
}

kv::KVCache loadCache(const std::filesystem::path& path, InputKind kind, const ProgressFn& progress,
                      std::string* description) {
  const std::string name = path.string();
  switch (kind) {
    case InputKind::RawCache:
      if (description) *description = "raw cache";
      return io::load_cache(path);
    case InputKind::Bitstream: {
#if KVSCOPE_GUI_HAVE_CODECS
      const io::FileBytes bytes = io::FileBytes::map(path);
      codec::DecodeOptions options;
      options.progress = progress;
      try {
        kv::KVCache cache = codec::decode(bytes.bytes(), options);
        if (description) {
          const double bits =
              cache.shape().elements() ? 8.0 * double(bytes.size()) / double(cache.shape().elements()) : 0;
          *description = "decoded bitstream, " + std::to_string(bits).substr(0, 5) + " bits/element";
        }
        return cache;
      } catch (const Error& e) {
        if (e.code() == ErrorCode::Cancelled) throw;
        throw Error(e.code(), name + ": " + e.what());
      }
#else
      throw Error(ErrorCode::Unsupported, name + ": this build has no codecs to decode bitstreams");
#endif
    }
    case InputKind::Hdf5: {
#if KVSCOPE_GUI_HAVE_HDF5
      io::Hdf5ImportOptions options;
      options.progress = progress;
      try {
        const io::Hdf5Contents contents = io::import_hdf5(path, options);
        codec::DecodeOptions decode;
        decode.progress = progress;
        kv::KVCache cache = io::decode_hdf5_level(contents, 0, decode);
        if (description) {
          const auto& level = contents.levels.front();
          *description = "HDF5 export, level 0 (" + level.config.codec + ") decoded";
        }
        return cache;
      } catch (const Error& e) {
        if (e.code() == ErrorCode::Cancelled) throw;
        const std::string what = e.what();
        throw Error(e.code(), what.find(name) != std::string::npos ? what : name + ": " + what);
      }
#else
      throw Error(ErrorCode::Unsupported, name + ": this build has no HDF5 support");
#endif
    }
    default:
      throw Error(ErrorCode::InvalidArgument, name + ": not a KV cache file (.safetensors, .h5 or .kvc)");
  }
}

QString decodeContextText(const std::string& bytes, const std::string& name) {
  std::string_view view = bytes;
  if (view.starts_with("\xEF\xBB\xBF")) view.remove_prefix(3);
  // Control characters other than tab, newline, carriage return and form
  // feed mean a binary file: a model, an archive, a renamed cache.
  for (std::size_t i = 0; i < view.size(); ++i) {
    const auto c = static_cast<unsigned char>(view[i]);
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f')
      throw Error(ErrorCode::Format,
                  name + ": not a text file (binary byte 0x" +
                      QString::number(c, 16).rightJustified(2, QLatin1Char('0')).toStdString() +
                      " at offset " + std::to_string(i) + "); open it as a model or cache instead");
  }
  QStringDecoder decoder(QStringDecoder::Utf8, QStringDecoder::Flag::Stateless);
  QString text = decoder.decode(QByteArrayView(view.data(), qsizetype(view.size())));
  if (decoder.hasError()) {
    // Find the first bad sequence for the message (the decoder does not say where).
    std::size_t offset = 0;
    const QByteArray round = text.toUtf8();
    while (offset < view.size() && offset < std::size_t(round.size()) &&
           round[qsizetype(offset)] == view[offset])
      ++offset;
    throw Error(ErrorCode::Format, name + ": not UTF-8 text (invalid byte sequence at offset " +
                                       std::to_string(offset) + "); save it as UTF-8 and open it again");
  }
  return text;
}

QString readContextText(const std::filesystem::path& path) {
  return decodeContextText(read_file(path), path.string());
}

}  // namespace kvscope::gui
