// SPDX-License-Identifier: Apache-2.0
#pragma once

// A codec ladder: the levels a chunk can be sent at, from finest (largest,
// best quality) to coarsest. Stored as user-editable JSON in
// resources/ladders/.

#include <filesystem>
#include <string>
#include <vector>

#include "kvscope/codec/codec.h"

namespace kvscope::stream {

/// One rung: a display name and the codec configuration that encodes it.
struct LadderLevel {
  std::string name;
  codec::CodecConfig config;
};

struct Ladder {
  std::string name;
  std::string description;
  std::vector<LadderLevel> levels;  ///< fine -> coarse

  /// Index of the level called `name`, or the level at index `name` when it
  /// is a number; -1 when neither.
  int find(const std::string& name) const;
};

/// Reads a ladder file:
///   {"name": "...", "description": "...",
///    "levels": [{"name": "cachegen-fine", "codec": "cachegen",
///                "params": {"key_bins": "32,32,16", "chunk_tokens": 256}}, ...]}
/// Parameter values may be JSON strings, numbers, booleans or arrays of
/// integers (written to the codec's text form "32,16,16").
/// Errors: Error(Io) unreadable; Error(Format) naming the file and the field
/// when malformed, when there are no levels, or when two levels share a name.
/// Codec names and parameters are checked by the codec at encode time.
Ladder load_ladder(const std::filesystem::path& path);

/// Parses ladder JSON text in the format above (what load_ladder reads from
/// a file, e.g. a ladder embedded in a GUI workspace). `source` names the
/// text in errors; `default_name` is the ladder's name when the text has none.
/// Errors: Error(Format) as load_ladder.
Ladder parse_ladder(const std::string& json_text, const std::string& source,
                    const std::string& default_name = "ladder");

/// The JSON text save_ladder writes; parse_ladder(ladder_to_json(l)) == l.
std::string ladder_to_json(const Ladder& ladder);

/// Writes a ladder in the format above, atomically.
void save_ladder(const Ladder& ladder, const std::filesystem::path& path);

/// Folder of the shipped ladders (resource_dir()/ladders) and the default one
/// in it (default.json).
std::filesystem::path ladder_dir();
std::filesystem::path default_ladder_path();

/// A stable text key for a codec configuration ("int8" or
/// "cachegen?key_bins=32,16,16&value_bins=..."), used to cache encoded chunks.
std::string config_key(const codec::CodecConfig& config);

/// Configurations of the fixed baselines: fp16 and the paper's 8-bit
/// per-token quantization (codec "int8") with default parameters.
codec::CodecConfig fp16_config();
codec::CodecConfig int8_config();

}  // namespace kvscope::stream
