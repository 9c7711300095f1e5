// SPDX-License-Identifier: Apache-2.0
#pragma once

// HDF5 container for encoded KV caches (schema: docs/hdf5-format.md).
// The file keeps each level's bitstream byte for byte, so importing and
// decoding gives the same cache, bit for bit, as decoding the original
// bitstream; everything else (model identity, context, codec parameters,
// section table, optional fp16 reference) is descriptive data for people and
// for Python (h5py) users.
//
// Only built when KVSCOPE_WITH_HDF5 (the macro KVSCOPE_HAVE_HDF5 says so).
// All functions are safe to call from worker threads (Debian's HDF5 is built
// thread-safe; HDF5 never prints to stderr from these calls). Exports and
// imports run one at a time per process: they share one lock, so import's
// check process is never forked while another thread is inside HDF5.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"
#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::io {

/// Name stored in the root attribute `format`.
inline constexpr const char* kHdf5FormatName = "kvscope-encoded-cache";
/// Version this build writes and the newest it reads. Bumped on any change a
/// reader of the previous version would misread.
inline constexpr int kHdf5FormatVersion = 1;
/// Bytes reserved at the start of the file for KVScope's whole-file checksum
/// (an HDF5 "user block"; HDF5, h5py and h5dump skip it).
inline constexpr int kHdf5UserBlockBytes = 512;

/// One contiguous byte range of a bitstream, as the codec's section list
/// describes it (container header, a chunk section, a table ...).
struct Hdf5Section {
  std::uint64_t offset = 0;  ///< from the start of the bitstream
  std::uint64_t length = 0;
  std::string kind;               ///< short label, at most 15 bytes ("header", "table", "chunk")
  std::int32_t chunk = -1;        ///< chunk index, -1 when not a chunk section
  std::int32_t layer = -1;        ///< layer the section belongs to, -1 for none
  std::int32_t kv = -1;           ///< 0 = key, 1 = value, -1 for none
  std::int32_t token_begin = -1;  ///< tokens covered, -1 when not applicable
  std::int32_t token_end = -1;
  std::uint32_t crc32c = 0;  ///< of the section's bytes; filled by export
};

/// One encoded version of the cache (a rung of a streaming ladder, or the
/// only encoding). `bitstream` is exactly what codec::encode returned.
struct Hdf5Level {
  /// Codec name and the parameters asked for. The file states the codec and
  /// every parameter as the bitstream's header records them; `config` may
  /// leave the codec empty, and a non-empty one must match the header.
  codec::CodecConfig config;
  std::vector<std::uint8_t> bitstream;
  std::string label;  ///< free text, e.g. "level 2 of 4"; may be empty
  /// Byte ranges of `bitstream`. Empty = export derives them from the
  /// codec's section list (codec::inspect_stream): "header", then one
  /// "table" or "chunk" range per section.
  std::vector<Hdf5Section> sections;
};

/// A calibration profile the codec used, embedded so the file is complete.
struct Hdf5Calibration {
  std::string name;
  std::string hash;                 ///< as the bitstream references it (codec::calibration::profile_hash)
  std::vector<std::uint8_t> bytes;  ///< the profile file's bytes
};

/// What an export writes (and what an import returns).
struct Hdf5Contents {
  kv::CacheShape shape;
  kv::CacheInfo info;               ///< model identity, rope, token ids, positions
  std::optional<std::string> text;  ///< context text; written only when allowed
  std::vector<Hdf5Level> levels;    ///< at least one
  std::optional<Hdf5Calibration> calibration;
  /// Original cache (written as fp16, deflate + shuffle), when asked. On
  /// import: present only when Hdf5ImportOptions::load_reference.
  std::optional<kv::KVCache> reference;

  // Filled by import only (ignored by export):
  int format_version = 0;
  std::string kvscope_version;  ///< version of KVScope that wrote the file
  std::string created_utc;      ///< ISO-8601, e.g. "2026-11-28T05:40:00Z"
  bool has_reference = false;   ///< the file holds /reference/cache
};

struct Hdf5ExportOptions {
  /// Replace an existing file. Without it, an existing `path` is an
  /// Error(Io) and the file is left untouched.
  bool overwrite = false;
  /// Write `contents.text`. Off by default: the text may be private.
  bool include_text = false;
  /// Write `contents.reference` (Error(InvalidArgument) when asked but absent).
  bool include_reference = false;
  /// When `contents.calibration` is empty, embed the profile file a level's
  /// "profile" parameter names (cachegen's calibration mode), so the file
  /// decodes anywhere.
  bool embed_calibration = true;
  int deflate_level = 4;  ///< 0-9, for the reference data
  /// Also state, for any parameter the bitstream's header omits, what it
  /// means for that stream (codec::stream_params(): the value at the
  /// stream's layout version, else the codec's default), and refuse
  /// parameter names the codec does not declare (needs the codec registered
  /// in this build).
  bool complete_params = true;
  ProgressFn progress;  ///< may cancel; nothing is left behind then
};

struct Hdf5ExportResult {
  std::uint64_t file_bytes = 0;
  std::uint64_t bitstream_bytes = 0;  ///< sum over levels
  double seconds = 0;
};

/// Writes `contents` to `path`: built in a temporary file in the same folder,
/// then renamed into place, so a failure or cancel leaves no file (and an
/// existing file untouched). Throws Error(InvalidArgument) for inconsistent
/// contents (no level, a level that is not a valid bitstream or disagrees
/// with `shape` or its codec name, token ids not matching the shape, a
/// section outside its bitstream, unknown parameter), Error(Io) naming the file for
/// filesystem/HDF5 failures or an existing file without `overwrite`,
/// Error(Cancelled) when progress says so.
Hdf5ExportResult export_hdf5(const std::filesystem::path& path, const Hdf5Contents& contents,
                             const Hdf5ExportOptions& options = {});

/// Contents holding one level, `bitstream`, with the shape, model identity,
/// token ids and positions its header records (codec::inspect_stream): what
/// the CLI exports when it only has the bitstream. Text, reference and
/// calibration are left empty for the caller to add. Throws what
/// codec::inspect_stream throws for an invalid bitstream.
Hdf5Contents hdf5_contents_from_bitstream(std::vector<std::uint8_t> bitstream, std::string label = {});

struct Hdf5ImportOptions {
  bool load_reference = false;  ///< read /reference/cache into contents.reference
  /// Check the whole-file CRC32C in the user block before HDF5 parses
  /// anything. Turning it off accepts files edited after export (e.g. with
  /// h5py), relying on the per-dataset checksums only; HDF5 itself is not
  /// hardened against arbitrary corruption, so keep it on for untrusted files.
  bool verify_file_checksum = true;
  /// Largest /reference/cache (values) import allocates; a larger one is
  /// Error(Unsupported) naming both numbers (docs/hostile-input.md).
  std::size_t max_elements = codec::default_max_elements();
  /// Parse the file in a child process first, and import only when that
  /// finished: HDF5 1.10 can crash or hang on a crafted file (one whose
  /// whole-file checksum was recomputed), which then becomes Error(Format)
  /// instead of taking this process down. Costs a second parse of the file.
  bool isolate = true;
  /// The child's time limit (seconds); 0 = 30 s plus 1 s per 20 MB of file.
  double isolate_timeout_seconds = 0;
  ProgressFn progress;
};

/// Reads a file written by export_hdf5. Every dataset's CRC32C is verified.
/// Throws Error naming the file: Io (cannot read), Format (not HDF5, not a
/// KVScope file, truncated, missing group/dataset/attribute, wrong type or
/// shape, inconsistent values), Checksum (file or dataset checksum
/// mismatch), Unsupported (format version newer than kHdf5FormatVersion),
/// Cancelled.
Hdf5Contents import_hdf5(const std::filesystem::path& path, const Hdf5ImportOptions& options = {});

/// Decodes level `level` of imported contents with codec::decode (bit-exact
/// with decoding the original bitstream) and checks that the decoded shape
/// matches the file's. When the file embeds a calibration profile and
/// `options.profile_dir` is empty, the decoder finds it in a temporary
/// folder (removed afterwards). Info fields the bitstream leaves empty (model name,
/// token ids, ...) are taken from the file. Throws Error(InvalidArgument) for
/// a bad level index, Error(Format) for a shape mismatch, and whatever
/// codec::decode throws.
kv::KVCache decode_hdf5_level(const Hdf5Contents& contents, int level = 0,
                              const codec::DecodeOptions& options = {});

/// True when `path` ends in ".h5" or ".hdf5" (case-insensitive): how the CLI
/// chooses the HDF5 container over a raw bitstream.
bool is_hdf5_path(const std::filesystem::path& path);

}  // namespace kvscope::io
