// SPDX-License-Identifier: Apache-2.0
#include "kvscope/codec/calibration.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>

#include "cachegen_internal.h"
#include "kvscope/codec/bin_plan.h"
#include "kvscope/codec/calibration_file.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/thread_pool.h"

namespace kvscope::codec {

namespace detail::cachegen {

namespace {

// Whether a calibration file was made for the cache's model: by file hash
// when both have one, else by name.
bool same_model(const std::string& name, const std::string& sha256, const kv::CacheInfo& info) {
  return !sha256.empty() && !info.model_sha256.empty() ? sha256 == info.model_sha256
                                                       : !name.empty() && name == info.model_name;
}

// The calibration folder's files, in name order (the same choice every time).
std::vector<std::filesystem::path> calibration_files() {
  namespace fs = std::filesystem;
  const fs::path dir = calibration::default_calibration_dir();
  std::error_code ec;
  std::vector<fs::path> files;
  if (!fs::is_directory(dir, ec)) return files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == calibration::kCalibrationExtension) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

std::string fnv_hex(std::span<const std::uint8_t> bytes) {
  return calibration::file_hash(bytes);
}

Profile parse_profile(std::span<const std::uint8_t> bytes, const std::string& label) {
  const auto file = calibration::parse(bytes, label);
  const auto* section = file.find(calibration::kLegacyCachegenSection);
  if (!section)
    throw Error(ErrorCode::Format, label,
                std::string("calibration has no '") + calibration::kLegacyCachegenSection + "' section");
  ByteReader head(*section, label + " [" + calibration::kLegacyCachegenSection + "]");
  // The section starts with its own version (1 or 2: the table layouts of
  // calibration file versions 1 and 2; 3 adds the key space), then that
  // version's body.
  const std::uint16_t version = head.u16();
  if (version < 1 || version > 4)
    throw Error(ErrorCode::Unsupported, label,
                "unsupported cachegen table version " + std::to_string(version));
  ByteReader b(head.bytes(head.remaining()), head.what());
  Profile p;
  auto& L = p.layout;
  L.layers = int(b.u32());
  L.channels = int(b.u32());
  L.group_size = int(b.u32());
  L.chunk_tokens = int(b.u32());
  if (L.layers < 1 || L.layers > 4096 || L.channels < 1 || L.channels > (1 << 20) || L.group_size < 1 ||
      L.chunk_tokens < 1)
    b.fail("bad profile shape");
  L.scale = Layout::Scale::Channel;  // version 1 profiles predate the scale choice
  if (version >= 2) {
    const std::uint8_t scale = b.u8();
    if (scale > 2) b.fail("bad scale");
    L.scale = Layout::Scale(scale);
  }
  if (version >= 3) {  // the key space the tables were counted in
    const std::uint8_t space = b.u8();
    if (space > 1) b.fail("bad key space");
    L.key_space = space ? Layout::KeySpace::PreRope : Layout::KeySpace::PostRope;
  }
  if (version >= 4) read_channel_scales(b, L);  // the channel scales the tables were counted with
  for (int k = 0; k < 2; ++k) {
    L.bins[k].resize(L.layers);
    for (auto& v : L.bins[k]) {
      v = b.u16();
      if (v < 4 || v > 256) b.fail("bins out of range");
    }
  }
  const std::size_t n = std::size_t(L.layers) * 2 * L.channels;
  if (n * 4 > b.remaining()) b.fail("profile too short for its shape");
  p.anchor.resize(n);
  p.delta.resize(n);
  p.raw.resize(n);
  for (int l = 0; l < L.layers; ++l)
    for (int k = 0; k < 2; ++k) {
      for (int c = 0; c < L.channels; ++c) {
        const std::size_t i = (std::size_t(l) * 2 + k) * L.channels + c;
        p.raw[i] = b.u8();
        if (p.raw[i] > 1) b.fail("bad channel mode");
        p.anchor[i] = FreqModel::read(b, L.anchor_alphabet(l, k));
        p.delta[i] = FreqModel::read(b, L.delta_alphabet(l, k));
        if (p.raw[i] && !p.delta[i].empty()) b.fail("raw channel with a delta model");
        // Profiles must be able to code any symbol.
        for (const auto* m : {&p.anchor[i], &p.delta[i]}) {
          if (m == &p.delta[i] && p.raw[i]) continue;
          if (m->empty()) b.fail("profile model is empty");
          for (int s = 0; s < m->size(); ++s)
            if (m->freq(s) == 0) b.fail("profile model has a zero frequency");
        }
      }
    }
  if (!b.done()) b.fail("trailing bytes in profile body");
  p.hash = calibration::file_hash(bytes);
  return p;
}

Profile load_profile_file(const std::string& path) {
  const std::string data = read_file(path);
  return parse_profile({reinterpret_cast<const std::uint8_t*>(data.data()), data.size()}, path);
}

namespace {

// What cachegen reads from one calibration file.
struct CalibrationEntry {
  std::string model_name, model_sha256;
  std::shared_ptr<const Profile> profile;                  // null without cachegen.tables
  std::optional<calibration::ChannelWeighting> weighting;  // the cachegen.channel-weighting section
  // The cachegen.sensitivity section, parsed only when asked for, so a bad
  // one never stops the tables from decoding streams.
  std::optional<std::vector<std::uint8_t>> sensitivity;
  std::filesystem::path path;
};

// Reads and parses a calibration file once: encoders scan the folder and
// decoders open streams' calibrations on every call (every chunk of a
// stream), and a file may be 12 MB with the transform bases. A parsed file is
// reused while it is still there with the same size and modification time;
// a replaced or removed one is read again. The last 16 are kept.
// Error(Io|Format|Checksum) as the parsers throw them.
std::shared_ptr<const CalibrationEntry> read_calibration(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  struct Kept {
    fs::path path;
    std::uintmax_t size = 0;
    fs::file_time_type time;
    std::shared_ptr<const CalibrationEntry> entry;
  };
  static std::mutex mutex;
  static std::list<Kept> recent;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  const auto time = ec ? fs::file_time_type() : fs::last_write_time(path, ec);
  if (!ec) {
    std::lock_guard lock(mutex);
    for (auto it = recent.begin(); it != recent.end(); ++it)
      if (it->path == path && it->size == size && it->time == time) {
        recent.splice(recent.begin(), recent, it);
        return recent.front().entry;
      }
  }
  const std::string data = read_file(path);
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  const auto file = calibration::parse(bytes, path.string());
  auto entry = std::make_shared<CalibrationEntry>();
  entry->model_name = file.model_name;
  entry->model_sha256 = file.model_sha256;
  entry->path = path;
  if (const auto* section = file.find(kSensitivitySection)) entry->sensitivity = *section;
  if (file.find(calibration::kLegacyCachegenSection))
    entry->profile = std::make_shared<const Profile>(parse_profile(bytes, path.string()));
  if (const auto* section = file.find(calibration::kChannelWeightingSection))
    entry->weighting = calibration::parse_channel_weighting(*section, path.string());
  if (!ec) {
    std::lock_guard lock(mutex);
    recent.push_front({path, size, time, entry});
    if (recent.size() > 16) recent.pop_back();
  }
  return entry;
}

// The entries of the calibration folder's files made for the cache's model,
// in name order (unreadable or foreign files are not this model's calibration).
std::vector<std::shared_ptr<const CalibrationEntry>> model_calibrations(const kv::CacheInfo& info) {
  std::vector<std::shared_ptr<const CalibrationEntry>> out;
  for (const auto& f : calibration_files()) {
    try {
      auto entry = read_calibration(f);
      if (same_model(entry->model_name, entry->model_sha256, info)) out.push_back(std::move(entry));
    } catch (const Error&) {
    }
  }
  return out;
}

}  // namespace

std::shared_ptr<const Profile> load_profile_by_hash(const std::string& hash, const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path path = (dir.empty() ? calibration::default_calibration_dir() : fs::path(dir)) /
                        (hash + calibration::kCalibrationExtension);
  std::error_code ec;
  if (!fs::exists(path, ec)) calibration::read_by_hash(hash, dir);  // throws Io naming the file and folder
  const auto entry = read_calibration(path);
  if (!entry->profile)
    throw Error(ErrorCode::Format, path.string(),
                std::string("calibration has no '") + calibration::kLegacyCachegenSection + "' section");
  if (entry->profile->hash != hash)
    throw Error(ErrorCode::Checksum, path.string(), "calibration content does not match its hash");
  return entry->profile;
}

std::optional<Profile> find_model_profile(const kv::CacheInfo& info, const Layout& layout) {
  for (const auto& entry : model_calibrations(info))
    if (entry->profile && profile_fits(*entry->profile, layout)) return *entry->profile;
  return std::nullopt;
}

std::optional<calibration::ChannelWeighting> find_channel_weighting(const std::string& profile,
                                                                    const kv::CacheInfo& info,
                                                                    const Layout& layout) {
  auto fits = [&](const std::optional<calibration::ChannelWeighting>& w) {
    return w && w->layers == layout.layers && w->channels == layout.channels ? w : std::nullopt;
  };
  if (!profile.empty() && profile != "auto") return fits(read_calibration(profile)->weighting);
  for (const auto& entry : model_calibrations(info))
    if (auto w = fits(entry->weighting)) return w;
  return std::nullopt;
}

}  // namespace detail::cachegen

std::optional<LayerSensitivity> find_model_sensitivity(const kv::CacheInfo& info) {
  for (const auto& entry : detail::cachegen::model_calibrations(info))
    if (entry->sensitivity) return parse_sensitivity(*entry->sensitivity, entry->path.string());
  return std::nullopt;
}

namespace calibration {

std::filesystem::path default_profile_dir() {
  return default_calibration_dir();
}

std::vector<std::filesystem::path> model_calibration_files(const kv::CacheInfo& info) {
  std::vector<std::filesystem::path> out;
  for (const auto& entry : detail::cachegen::model_calibrations(info)) out.push_back(entry->path);
  return out;
}

std::vector<std::uint8_t> build_profile(std::span<const kv::KVCache> caches, const ParamSet& params,
                                        const ProgressFn& progress, const ChannelWeighting* weighting) {
  using namespace detail;
  using namespace detail::cachegen;
  if (caches.empty()) throw Error(ErrorCode::InvalidArgument, "calibration needs at least one cache");
  const auto shape = caches[0].shape();
  for (const auto& c : caches)
    if (c.shape().layers != shape.layers || c.shape().kv_heads != shape.kv_heads ||
        c.shape().head_dim != shape.head_dim)
      throw Error(ErrorCode::InvalidArgument, "calibration caches differ in layers, kv_heads or head_dim");
  const Params p("cachegen", param_specs(&shape), complete_layer_splits(params, shape.layers));
  if (!p.get("profile").empty() && p.get("profile") != "auto")
    throw Error(ErrorCode::InvalidArgument, "calibration: parameter 'profile' must be empty or auto");
  Layout L = make_layout(p, shape);
  if (L.delta_mode != Layout::DeltaMode::Integer)
    throw Error(ErrorCode::InvalidArgument,
                "calibration: profiles hold integer-mode tables (delta_mode=integer)");
  if (weighting && p.get("channel_weighting") == "calibrated" && L.scale != Layout::Scale::Channel) {
    if (weighting->layers != L.layers || weighting->channels != L.channels)
      throw Error(ErrorCode::InvalidArgument, "calibration: the channel weighting is for another shape");
    weight_layout(L, *weighting);
  }
  const int C = L.channels;
  // Keys before RoPE with key_space=pre_rope: removed once per cache.
  std::vector<kv::KVCache> pre_rope(caches.size());
  std::vector<const kv::KVCache*> coded;
  for (std::size_t i = 0; i < caches.size(); ++i) coded.push_back(&coding_cache(caches[i], L, pre_rope[i]));
  std::vector<std::vector<std::uint8_t>> parts(std::size_t(L.layers) * 2);
  parallel_for(parts.size(), 0, [&](std::size_t lk) {
    const int l = int(lk / 2), k = int(lk % 2);
    const int A = L.anchor_alphabet(l, k), B = L.delta_alphabet(l, k);
    std::vector<std::uint64_t> ac(std::size_t(C) * A), dc(std::size_t(C) * B), rc(std::size_t(C) * A);
    for (std::size_t i = 0; i < caches.size(); ++i) {
      const kv::KVCache& cache = *coded[i];
      for (int b = 0; b < cache.shape().tokens; b += L.chunk_tokens) {
        const auto cs = quantize_chunk(cache, l, kv::Kind(k), b,
                                       std::min(L.chunk_tokens, cache.shape().tokens - b), L, &caches[i]);
        count_symbols(cs, L, l, k, ac, dc);
        count_raw(cs, L, l, k, rc);
      }
    }
    ByteWriter w(parts[lk]);
    for (int c = 0; c < C; ++c) {
      std::span<const std::uint64_t> a{ac.data() + std::size_t(c) * A, std::size_t(A)};
      std::span<const std::uint64_t> d{dc.data() + std::size_t(c) * B, std::size_t(B)};
      std::span<const std::uint64_t> rw{rc.data() + std::size_t(c) * A, std::size_t(A)};
      const std::uint8_t raw = choose_raw(L, rw, a, d, false);
      w.u8(raw);
      FreqModel::from_counts(raw ? rw : a, true).write(w);
      if (raw)
        FreqModel().write(w);
      else
        FreqModel::from_counts(d, true).write(w);
    }
    report_progress(progress, 0.5, "calibrating");
  });
  std::vector<std::uint8_t> body;
  ByteWriter b(body);
  // cachegen table layout version (3 added the key space, 4 the channel scales)
  b.u16(L.weighted() ? 4 : 3);
  b.u32(L.layers);
  b.u32(C);
  b.u32(L.group_size);
  b.u32(L.chunk_tokens);
  b.u8(std::uint8_t(L.scale));
  b.u8(L.key_space == Layout::KeySpace::PreRope ? 1 : 0);
  write_channel_scales(b, L);
  for (int k = 0; k < 2; ++k)
    for (int v : L.bins[k]) b.u16(std::uint16_t(v));
  for (const auto& part : parts) b.bytes(part.data(), part.size());
  CalibrationFile file;
  file.model_name = caches[0].info.model_name;
  file.model_sha256 = caches[0].info.model_sha256;
  file.sections.emplace(kLegacyCachegenSection, std::move(body));
  return serialize(file);
}

std::string profile_hash(std::span<const std::uint8_t> bytes) {
  return file_hash(bytes);
}

std::filesystem::path save_profile(std::span<const std::uint8_t> bytes, const std::filesystem::path& dir) {
  return save(bytes, dir);
}

}  // namespace calibration
}  // namespace kvscope::codec
