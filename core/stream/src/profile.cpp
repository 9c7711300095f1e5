// SPDX-License-Identifier: Apache-2.0
#include "kvscope/stream/profile.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::stream {
namespace {

constexpr double kBytesPerMbit = 1e6 / 8.0;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool finite_nonneg(double v) {
  return std::isfinite(v) && v >= 0;
}

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

bool parse_double(const std::string& text, double& out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && std::isfinite(out);
}

std::string lower_ext(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext;
}

BandwidthProfile parse_csv(const std::filesystem::path& path, const std::string& text) {
  std::vector<ProfilePoint> points;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  bool header_seen = false;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    const auto comma = t.find(',');
    if (comma == std::string::npos)
      throw Error(ErrorCode::Format, path.string(),
                  "line " + std::to_string(lineno) + ": expected 'time_s,mbps', got '" + t + "'");
    const std::string a = trim(std::string_view(t).substr(0, comma));
    const std::string b = trim(std::string_view(t).substr(comma + 1));
    double time = 0, mbps = 0;
    const bool ok = parse_double(a, time) && parse_double(b, mbps);
    if (!ok) {
      // One header line before any data is allowed (e.g. "time_s,mbps").
      double unused = 0;
      if (!header_seen && points.empty() && !parse_double(a, unused)) {
        header_seen = true;
        continue;
      }
      throw Error(ErrorCode::Format, path.string(),
                  "line " + std::to_string(lineno) + ": expected two numbers 'time_s,mbps', got '" + t + "'");
    }
    if (time < 0)
      throw Error(ErrorCode::Format, path.string(),
                  "line " + std::to_string(lineno) + ": negative time " + a);
    if (mbps < 0)
      throw Error(ErrorCode::Format, path.string(),
                  "line " + std::to_string(lineno) + ": negative rate " + b);
    if (!points.empty() && time <= points.back().time_s)
      throw Error(ErrorCode::Format, path.string(),
                  "line " + std::to_string(lineno) + ": time " + a + " is not after the previous sample's");
    points.push_back({time, mbps});
  }
  if (points.empty()) throw Error(ErrorCode::Format, path.string(), "no 'time_s,mbps' samples");
  if (points.back().mbps <= 0)
    throw Error(ErrorCode::Format, path.string(),
                "the last sample's rate must be > 0 (it holds after the trace ends)");
  auto profile = BandwidthProfile::piecewise(std::move(points));
  profile.set_name(path.stem().string());
  return profile;
}

double json_number(const nlohmann::json& j, const char* key, const std::filesystem::path& path) {
  if (!j.contains(key) || !j.at(key).is_number())
    throw Error(ErrorCode::Format, path.string(), std::string("field '") + key + "' must be a number");
  return j.at(key).get<double>();
}

BandwidthProfile parse_json(const std::filesystem::path& path, const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::Format, path.string(), std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(ErrorCode::Format, path.string(), "expected a JSON object");
  // Not j.value(): it throws nlohmann's type_error when "kind" is not a string.
  const std::string kind = j.contains("kind") && j["kind"].is_string() ? j["kind"].get<std::string>() : "";
  BandwidthProfile profile;
  try {
    if (kind == "constant") {
      profile = BandwidthProfile::constant(json_number(j, "mbps", path));
    } else if (kind == "steps" || kind == "trace") {
      if (!j.contains("points") || !j["points"].is_array())
        throw Error(ErrorCode::Format, path.string(), "field 'points' must be an array of [time_s, mbps]");
      std::vector<ProfilePoint> points;
      for (std::size_t i = 0; i < j["points"].size(); ++i) {
        const auto& p = j["points"][i];
        if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number())
          throw Error(ErrorCode::Format, path.string(),
                      "points[" + std::to_string(i) + "] must be [time_s, mbps]");
        points.push_back({p[0].get<double>(), p[1].get<double>()});
      }
      profile = BandwidthProfile::piecewise(std::move(points));
    } else if (kind == "per_chunk_random") {
      const double seed = j.contains("seed") ? json_number(j, "seed", path) : 0.0;
      if (seed < 0 || seed != std::floor(seed))
        throw Error(ErrorCode::Format, path.string(), "field 'seed' must be a non-negative integer");
      profile = BandwidthProfile::per_chunk_random(json_number(j, "min_mbps", path),
                                                   json_number(j, "max_mbps", path),
                                                   static_cast<std::uint64_t>(seed));
    } else {
      throw Error(ErrorCode::Format, path.string(),
                  "field 'kind' must be constant, steps, trace or per_chunk_random (got '" + kind + "')");
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::InvalidArgument) throw Error(ErrorCode::Format, path.string(), e.what());
    throw;
  }
  profile.set_name(j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>()
                                                               : path.stem().string());
  if (j.contains("description") && j["description"].is_string()) profile.set_description(j["description"]);
  return profile;
}

}  // namespace

BandwidthProfile BandwidthProfile::constant(double mbps) {
  require(std::isfinite(mbps) && mbps > 0, ErrorCode::InvalidArgument,
          "constant bandwidth must be a finite rate > 0 Mbit/s");
  BandwidthProfile p;
  p.kind_ = Kind::Constant;
  p.points_ = {{0.0, mbps}};
  p.min_mbps_ = p.max_mbps_ = mbps;
  return p;
}

BandwidthProfile BandwidthProfile::piecewise(std::vector<ProfilePoint> points) {
  require(!points.empty(), ErrorCode::InvalidArgument, "a bandwidth trace needs at least one sample");
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto& pt = points[i];
    require(finite_nonneg(pt.time_s) && finite_nonneg(pt.mbps), ErrorCode::InvalidArgument,
            "sample " + std::to_string(i) + ": time and rate must be finite and >= 0");
    require(i == 0 || pt.time_s > points[i - 1].time_s, ErrorCode::InvalidArgument,
            "sample " + std::to_string(i) + ": times must increase");
  }
  require(points.back().mbps > 0, ErrorCode::InvalidArgument, "the last sample's rate must be > 0");
  BandwidthProfile p;
  p.kind_ = Kind::Piecewise;
  p.min_mbps_ = p.max_mbps_ = points[0].mbps;
  for (const auto& pt : points) {
    p.min_mbps_ = std::min(p.min_mbps_, pt.mbps);
    p.max_mbps_ = std::max(p.max_mbps_, pt.mbps);
  }
  p.points_ = std::move(points);
  return p;
}

BandwidthProfile BandwidthProfile::per_chunk_random(double min_mbps, double max_mbps, std::uint64_t seed) {
  require(std::isfinite(min_mbps) && std::isfinite(max_mbps) && min_mbps > 0 && min_mbps <= max_mbps,
          ErrorCode::InvalidArgument, "per-chunk random bandwidth needs 0 < min_mbps <= max_mbps");
  BandwidthProfile p;
  p.kind_ = Kind::PerChunkRandom;
  p.min_mbps_ = min_mbps;
  p.max_mbps_ = max_mbps;
  p.seed_ = seed;
  return p;
}

double BandwidthProfile::mbps_at(double t, int chunk) const {
  switch (kind_) {
    case Kind::Constant:
      return points_[0].mbps;
    case Kind::PerChunkRandom: {
      // Hash (seed, chunk) so a chunk's rate does not depend on which chunks
      // were drawn before it (a policy may skip or reorder nothing, but the
      // GUI plots chunks independently).
      const std::uint64_t h = splitmix64(seed_ ^ splitmix64(static_cast<std::uint64_t>(chunk) + 1));
      const double u = double(h >> 11) * 0x1.0p-53;
      return min_mbps_ + u * (max_mbps_ - min_mbps_);
    }
    case Kind::Piecewise: {
      // Last point with time_s <= t (the first point also covers t before it).
      auto it = std::upper_bound(points_.begin(), points_.end(), t,
                                 [](double v, const ProfilePoint& p) { return v < p.time_s; });
      if (it == points_.begin()) return points_.front().mbps;
      return std::prev(it)->mbps;
    }
  }
  return 0;
}

double BandwidthProfile::bytes_between(double t0, double t1, int chunk) const {
  if (!(t1 > t0)) return 0.0;
  if (kind_ != Kind::Piecewise) return mbps_at(t0, chunk) * kBytesPerMbit * (t1 - t0);
  double bytes = 0;
  double t = t0;
  while (t < t1) {
    auto it = std::upper_bound(points_.begin(), points_.end(), t,
                               [](double v, const ProfilePoint& p) { return v < p.time_s; });
    const double seg_end = it == points_.end() ? t1 : std::min(t1, it->time_s);
    bytes += mbps_at(t, chunk) * kBytesPerMbit * (seg_end - t);
    t = seg_end;
  }
  return bytes;
}

double BandwidthProfile::transfer_end(double t0, double bytes, int chunk) const {
  if (!(bytes > 0)) return t0;
  if (kind_ != Kind::Piecewise) return t0 + bytes / (mbps_at(t0, chunk) * kBytesPerMbit);
  double t = std::max(t0, 0.0);
  double left = bytes;
  for (;;) {
    auto it = std::upper_bound(points_.begin(), points_.end(), t,
                               [](double v, const ProfilePoint& p) { return v < p.time_s; });
    const double rate = mbps_at(t, chunk) * kBytesPerMbit;
    if (it == points_.end()) return t + left / rate;  // last rate > 0 by construction
    const double seg = it->time_s - t;
    const double can = rate * seg;
    if (can >= left) return t + left / rate;
    left -= can;
    t = it->time_s;
  }
}

BandwidthProfile load_profile(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  const std::string ext = lower_ext(path);
  if (ext == ".csv") return parse_csv(path, text);
  if (ext == ".json") return parse_json(path, text);
  throw Error(ErrorCode::Format, path.string(), "unknown profile format (expected .csv or .json)");
}

void save_profile(const BandwidthProfile& profile, const std::filesystem::path& path) {
  const std::string ext = lower_ext(path);
  std::string out;
  if (ext == ".csv") {
    require(profile.kind() != BandwidthProfile::Kind::PerChunkRandom, ErrorCode::InvalidArgument,
            path.string() + ": a per-chunk random profile can only be saved as .json");
    std::ostringstream s;
    s.precision(17);
    s << "# " << (profile.name().empty() ? "bandwidth profile" : profile.name()) << "\n";
    s << "time_s,mbps\n";
    for (const auto& p : profile.points()) s << p.time_s << "," << p.mbps << "\n";
    out = s.str();
  } else if (ext == ".json") {
    nlohmann::json j;
    if (!profile.name().empty()) j["name"] = profile.name();
    if (!profile.description().empty()) j["description"] = profile.description();
    switch (profile.kind()) {
      case BandwidthProfile::Kind::Constant:
        j["kind"] = "constant";
        j["mbps"] = profile.points()[0].mbps;
        break;
      case BandwidthProfile::Kind::Piecewise: {
        j["kind"] = "trace";
        auto& pts = j["points"] = nlohmann::json::array();
        for (const auto& p : profile.points()) pts.push_back({p.time_s, p.mbps});
        break;
      }
      case BandwidthProfile::Kind::PerChunkRandom:
        j["kind"] = "per_chunk_random";
        j["min_mbps"] = profile.min_mbps();
        j["max_mbps"] = profile.max_mbps();
        j["seed"] = profile.seed();
        break;
    }
    out = j.dump(2) + "\n";
  } else {
    throw Error(ErrorCode::InvalidArgument, path.string(), "profile files must end in .csv or .json");
  }
  write_file_atomically(path, out.data(), out.size());
}

std::filesystem::path preset_profile_dir() {
  return resource_dir() / "profiles";
}

std::vector<std::string> preset_profile_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(preset_profile_dir(), ec)) {
    const std::string ext = lower_ext(entry.path());
    if (entry.is_regular_file() && (ext == ".csv" || ext == ".json"))
      names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

BandwidthProfile resolve_profile(const std::string& spec) {
  const std::filesystem::path as_path(spec);
  const std::string ext = lower_ext(as_path);
  if ((ext == ".csv" || ext == ".json") && std::filesystem::exists(as_path)) return load_profile(as_path);
  for (const char* e : {".json", ".csv"}) {
    const auto preset = preset_profile_dir() / (spec + e);
    if (spec.find('/') == std::string::npos && std::filesystem::exists(preset)) return load_profile(preset);
  }
  std::string known;
  for (const auto& n : preset_profile_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(ErrorCode::InvalidArgument,
              "bandwidth profile '" + spec + "' is neither a file nor a preset (presets: " + known + ")");
}

}  // namespace kvscope::stream
