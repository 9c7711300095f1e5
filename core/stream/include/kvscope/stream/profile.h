// SPDX-License-Identifier: Apache-2.0
#pragma once

// Network bandwidth profiles: how many bytes the link delivers over time.
// The simulated clock integrates them; the real transport paces its sender
// with them; the GUI plots and edits them.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kvscope::stream {

/// One sample of a piecewise-constant profile: from `time_s` until the next
/// sample's time the link carries `mbps` (1 Mbit/s = 1e6 bit/s).
struct ProfilePoint {
  double time_s = 0;
  double mbps = 0;
};

/// A bandwidth profile. Three kinds:
/// - Constant: one rate forever.
/// - Piecewise: steps or a trace; before the first point the first rate
///   holds, after the last point the last rate holds.
/// - PerChunkRandom: the original CacheGen scripts' model: each chunk's
///   rate is drawn uniformly from [min_mbps, max_mbps] with a seed, and is
///   constant while that chunk is on the wire (time is ignored).
class BandwidthProfile {
 public:
  enum class Kind { Constant, Piecewise, PerChunkRandom };

  /// Error(InvalidArgument) unless mbps is finite and > 0.
  static BandwidthProfile constant(double mbps);
  /// Error(InvalidArgument) unless points is non-empty, times are finite,
  /// >= 0 and strictly increasing, rates finite and >= 0, and the last rate
  /// is > 0 (so every transfer ends).
  static BandwidthProfile piecewise(std::vector<ProfilePoint> points);
  /// Error(InvalidArgument) unless 0 < min_mbps <= max_mbps (finite).
  static BandwidthProfile per_chunk_random(double min_mbps, double max_mbps, std::uint64_t seed);

  Kind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  const std::string& description() const { return description_; }
  void set_description(std::string text) { description_ = std::move(text); }

  /// Piecewise/Constant samples (Constant: one point at t=0).
  const std::vector<ProfilePoint>& points() const { return points_; }
  double min_mbps() const { return min_mbps_; }
  double max_mbps() const { return max_mbps_; }
  std::uint64_t seed() const { return seed_; }

  /// Rate at profile time `t` (seconds since the stream started) while chunk
  /// `chunk` is being sent. Time-based kinds ignore `chunk`; PerChunkRandom
  /// ignores `t`.
  double mbps_at(double t, int chunk = 0) const;
  /// Bytes the link delivers in [t0, t1] (the integral of the rate), 0 when t1 <= t0.
  double bytes_between(double t0, double t1, int chunk = 0) const;
  /// The time t1 >= t0 at which `bytes` bytes started at t0 have been
  /// delivered (the inverse of bytes_between). Always finite: the last rate
  /// of a profile is positive.
  double transfer_end(double t0, double bytes, int chunk = 0) const;
  /// The rate the first chunk sees: the policy's default prior.
  double initial_mbps() const { return mbps_at(0.0, 0); }
  /// Duration covered by the samples (0 for Constant and PerChunkRandom).
  double span_s() const { return points_.empty() ? 0.0 : points_.back().time_s; }

 private:
  Kind kind_ = Kind::Constant;
  std::string name_;
  std::string description_;
  std::vector<ProfilePoint> points_;
  double min_mbps_ = 0, max_mbps_ = 0;
  std::uint64_t seed_ = 0;
};

/// Reads a profile file:
/// - `.csv`: lines `time_s,mbps` (a header line and `#` comments allowed) ->
///   Piecewise;
/// - `.json`: {"name", "description", "kind": "constant"|"steps"|"trace"|
///   "per_chunk_random", "mbps" | "points": [[t, mbps], ...] |
///   "min_mbps", "max_mbps", "seed"}.
/// Errors: Error(Io) naming the file when unreadable; Error(Format) naming the
/// file and the line (CSV) or the field (JSON) when malformed.
BandwidthProfile load_profile(const std::filesystem::path& path);

/// Writes a profile atomically: Piecewise to `.csv` or `.json`, other kinds
/// to `.json` (Error(InvalidArgument) for a `.csv` of another kind).
void save_profile(const BandwidthProfile& profile, const std::filesystem::path& path);

/// Folder of the shipped presets: resource_dir()/profiles.
std::filesystem::path preset_profile_dir();
/// Names of the shipped presets (file stems), sorted.
std::vector<std::string> preset_profile_names();
/// `spec` is a preset name (a file stem in preset_profile_dir()) or a path to
/// a .csv/.json file. Error(InvalidArgument) listing the presets when neither.
BandwidthProfile resolve_profile(const std::string& spec);

}  // namespace kvscope::stream
