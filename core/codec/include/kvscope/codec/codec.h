// SPDX-License-Identifier: Apache-2.0
#pragma once

// The public API of KVScope's codec library: encode a KV cache into a
// self-describing bitstream (docs/bitstream.md) and decode it back.
// Pure C++ (no Qt, no libtorch): the GUI, CLI, streamer, HDF5 exporter and
// CUDA kernels are all clients of this header.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvscope/common/progress.h"
#include "kvscope/kv/kv_cache.h"

namespace kvscope::codec {

/// A parameter's self-description, so front ends build controls from it.
struct ParamSpec {
  enum class Type { Int, Float, Bool, Choice, IntList, Text };
  std::string name;  ///< key used in ParamSet and on the CLI (--set name=value)
  Type type = Type::Int;
  std::string default_value;  ///< in the same text form ParamSet uses
  double min = 0;             ///< Int/Float/IntList elements: inclusive range
  double max = 0;
  std::vector<std::string> choices;  ///< Choice: the allowed values
  // Text: free text (e.g. a file path), no range.
  std::string help;  ///< one line, shown as a tooltip and in --help
};

/// Parameter values as text ("32", "0.5", "true", "32,16,16"): the form the
/// CLI, JSON reports, HDF5 attributes and workspace files all share.
/// Keys missing from a ParamSet take their ParamSpec default.
using ParamSet = std::map<std::string, std::string>;

/// A codec and its parameters: one rung of a streaming ladder, one HDF5 export.
struct CodecConfig {
  std::string codec;  ///< registry name, e.g. "cachegen", "int8"
  ParamSet params;
};

/// Where the encoded bytes went. Every ratio in KVScope is computed from this.
struct SizeReport {
  std::size_t original_bytes = 0;  ///< the cache at fp16
  std::size_t encoded_bytes = 0;   ///< the whole bitstream, every table and header included
  std::size_t header_bytes = 0;    ///< container header and section headers
  std::size_t table_bytes = 0;     ///< shipped symbol tables (CDFs) and other side info (stream lengths)
  std::size_t step_bytes = 0;      ///< quantization steps (scales), coded or not
  std::size_t payload_bytes = 0;   ///< entropy-coded or packed symbols (and values stored exactly)
  std::size_t elements = 0;        ///< values in the cache
  /// Empirical entropy of the coded symbols under the model used, in bits per
  /// element (0 when the codec has no entropy stage).
  double entropy_bits_per_element = 0;
  /// Encoded bytes attributed to each (layer, kind): index layer * 2 + kind.
  std::vector<std::size_t> layer_bytes;

  double bits_per_element() const {
    return elements == 0 ? 0.0 : 8.0 * double(encoded_bytes) / double(elements);
  }
  double ratio_vs_fp16() const {
    return encoded_bytes == 0 ? 0.0 : double(original_bytes) / double(encoded_bytes);
  }
};

struct EncodeOptions {
  int threads = 0;      ///< 0 = all hardware threads
  ProgressFn progress;  ///< may cancel
};

/// Bytes of memory this process may use: the smallest of the machine's
/// physical memory, the address-space limit (RLIMIT_AS) and the cgroup
/// memory limit (memory.max), read once. 0 when none can be read.
std::uint64_t memory_budget_bytes();

/// The default cap on the values a decoder allocates for one cache or
/// tensor (DecodeOptions::max_elements, the HDF5 and raw-cache readers'
/// limits): the value set with set_default_max_elements(), else a quarter of
/// memory_budget_bytes() as float32 values, at least 2^20, and 2^31 when no
/// memory size can be read. docs/hostile-input.md.
std::size_t default_max_elements();

/// Sets the process-wide default cap (the CLI's --max-elements, the app's
/// "Largest cache to decode" setting); 0 returns to the memory-derived one.
/// Affects options objects created afterwards. Thread-safe.
void set_default_max_elements(std::size_t values);

/// Throws Error(Unsupported) naming both numbers when `elements` (what an
/// input declares) exceeds `limit`; `what` names the input ("bitstream",
/// a file). For readers to call before they allocate.
void require_within_limit(std::uint64_t elements, std::size_t limit, const std::string& what);

struct DecodeOptions {
  int threads = 0;
  ProgressFn progress;
  /// Folder searched for calibration profiles referenced by hash
  /// (empty = calibration::default_profile_dir()).
  std::string profile_dir;
  /// Largest cache (values) a stream may declare; larger ones are refused
  /// with Error(Unsupported) naming both numbers before any allocation
  /// (bounds memory and time on untrusted input). The CLI's
  /// --max-elements and the app's "Largest cache to decode" setting set it.
  std::size_t max_elements = default_max_elements();
};

struct EncodeResult {
  std::vector<std::uint8_t> bytes;  ///< the bitstream
  SizeReport size;
  double seconds = 0;  ///< wall time of the encode
};

/// A codec: stateless, thread-safe, found through the registry below.
class Codec {
 public:
  virtual ~Codec() = default;
  virtual std::string name() const = 0;
  /// One sentence for lists and tooltips.
  virtual std::string description() const = 0;
  /// Its parameters. Defaults may depend on the cache shape (e.g. layer
  /// groups scale with the layer count), so the shape is passed when known.
  virtual std::vector<ParamSpec> params(const kv::CacheShape* shape = nullptr) const = 0;
  /// Encodes `cache`. Throws Error(InvalidArgument) naming the parameter when
  /// a value is unknown or out of range; Error(Cancelled) when progress says so.
  virtual EncodeResult encode(const kv::KVCache& cache, const ParamSet& params,
                              const EncodeOptions& options = {}) const = 0;
};

/// Every registered codec, in a stable order (fp16 first).
std::vector<const Codec*> all_codecs();

/// The codec named `name`; Error(InvalidArgument) listing the known names otherwise.
const Codec& find_codec(const std::string& name);

/// Encodes with the codec the config names.
EncodeResult encode(const kv::KVCache& cache, const CodecConfig& config, const EncodeOptions& options = {});

/// Decodes any KVScope bitstream (the codec is read from its header).
/// Validates every length, index and CRC before use: corrupt, truncated or
/// tampered input throws Error(Format | Checksum | Unsupported) with a message,
/// never crashes. Every payload must be consumed exactly (trailing or
/// missing bytes are Format errors). A cache above options.max_elements, or
/// one whose allocation fails, is Error(Unsupported) before any value is decoded.
kv::KVCache decode(std::span<const std::uint8_t> bitstream, const DecodeOptions& options = {});

/// As decode(), into `out`, whose storage is reused when it already has the
/// stream's shape (no allocation and no page faults: what a receiver decoding
/// object after object of one shape wants); otherwise `out` is reshaped.
/// Every value of `out` is overwritten. On an error `out` keeps its shape but
/// its values are unspecified: callers that must not see partial output use
/// decode().
void decode_into(std::span<const std::uint8_t> bitstream, kv::KVCache& out,
                 const DecodeOptions& options = {});

/// Bytes of the paper's quantization baseline (per-token symmetric int8 with
/// its scales) for a cache of this shape: the denominator of "ratio vs int8".
std::size_t int8_reference_bytes(const kv::CacheShape& shape);

}  // namespace kvscope::codec
