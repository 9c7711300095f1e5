// SPDX-License-Identifier: Apache-2.0
// Framing of calibration files (docs/bitstream.md section 4): named sections,
// each with its own CRC, in one file hashed as a whole.
#include "kvscope/codec/calibration_file.h"

#include <cstdlib>
#include <cstring>

#include "byte_io.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"
#include "kvscope/common/paths.h"

namespace kvscope::codec::calibration {
namespace {

constexpr std::uint8_t kMagic[4] = {'K', 'V', 'S', 'P'};
constexpr std::uint16_t kVersion = 3;

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 255) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

}  // namespace

const std::vector<std::uint8_t>* CalibrationFile::find(const std::string& name) const {
  const auto it = sections.find(name);
  return it == sections.end() ? nullptr : &it->second;
}

std::filesystem::path default_calibration_dir() {
  for (const char* var : {"KVSCOPE_CALIBRATION_DIR", "KVSCOPE_PROFILE_DIR"})
    if (const char* e = std::getenv(var); e && *e) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return std::filesystem::path(x) / "kvscope/profiles";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : ".") / ".cache/kvscope/profiles";
}

std::vector<std::uint8_t> serialize(const CalibrationFile& file) {
  if (file.sections.size() > kMaxSections)
    throw Error(ErrorCode::InvalidArgument,
                "calibration: more than " + std::to_string(kMaxSections) + " sections");
  std::vector<std::uint8_t> body;
  detail::ByteWriter b(body);
  b.str(file.model_name);
  b.str(file.model_sha256);
  b.u16(static_cast<std::uint16_t>(file.sections.size()));
  for (const auto& [name, payload] : file.sections) {  // std::map: sorted by name
    if (!valid_name(name))
      throw Error(ErrorCode::InvalidArgument, "calibration: bad section name '" + name + "'");
    if (payload.size() > 0xffffffffu)
      throw Error(ErrorCode::InvalidArgument, "calibration: section '" + name + "' is larger than 4 GiB");
    b.str(name);
    b.u32(static_cast<std::uint32_t>(payload.size()));
    b.u32(crc32c(payload));
    b.bytes(payload.data(), payload.size());
  }
  std::vector<std::uint8_t> out;
  detail::ByteWriter w(out);
  w.bytes(kMagic, 4);
  w.u16(kVersion);
  w.u16(0);
  if (body.size() > 0xffffffffu)
    throw Error(ErrorCode::InvalidArgument, "calibration: file larger than 4 GiB");
  w.u32(static_cast<std::uint32_t>(body.size()));
  w.u32(crc32c(body));
  w.bytes(body.data(), body.size());
  return out;
}

CalibrationFile parse(std::span<const std::uint8_t> bytes, const std::string& label) {
  detail::ByteReader r(bytes, label);
  const auto magic = r.bytes(4);
  if (std::memcmp(magic.data(), kMagic, 4) != 0) r.fail("not a KVScope calibration file");
  const std::uint16_t version = r.u16();
  if (version < 1 || version > kVersion)
    throw Error(ErrorCode::Unsupported, label,
                "calibration file version " + std::to_string(version) +
                    " is not supported (this build reads 1-" + std::to_string(kVersion) + ")");
  if (r.u16() != 0) r.fail("bad flags");
  const std::uint32_t len = r.u32();
  const std::uint32_t crc = r.u32();
  const auto body = r.bytes(len);
  if (!r.done()) r.fail("trailing bytes");
  if (crc32c(body) != crc) throw Error(ErrorCode::Checksum, label, "calibration file checksum mismatch");

  CalibrationFile f;
  if (version < 3) {
    // Versions 1 and 2 held cachegen's tables only: present them as that section.
    std::vector<std::uint8_t> payload{std::uint8_t(version), 0};
    payload.insert(payload.end(), body.begin(), body.end());
    f.sections.emplace(kLegacyCachegenSection, std::move(payload));
    return f;
  }
  detail::ByteReader b(body, label);
  f.model_name = b.str();
  f.model_sha256 = b.str();
  const std::uint16_t n = b.u16();
  if (n > kMaxSections) b.fail("too many sections");
  std::string previous;
  for (std::uint16_t i = 0; i < n; ++i) {
    std::string name = b.str();
    if (!valid_name(name)) b.fail("bad section name");
    if (i > 0 && !(previous < name)) b.fail("section names not sorted and unique");
    const std::uint32_t size = b.u32();
    const std::uint32_t section_crc = b.u32();
    const auto payload = b.bytes(size);
    if (crc32c(payload) != section_crc)
      throw Error(ErrorCode::Checksum, label, "calibration section '" + name + "' checksum mismatch");
    previous = name;
    f.sections.emplace(std::move(name), std::vector<std::uint8_t>(payload.begin(), payload.end()));
  }
  if (!b.done()) b.fail("trailing bytes in calibration body");
  return f;
}

bool has_calibration_magic(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= sizeof kMagic && std::memcmp(bytes.data(), kMagic, sizeof kMagic) == 0;
}

std::string file_hash(std::span<const std::uint8_t> bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (auto b : bytes) {
    h ^= b;
    h *= 1099511628211ull;
  }
  static const char* hex = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) s[std::size_t(i)] = hex[h & 15];
  return s;
}

std::filesystem::path save(std::span<const std::uint8_t> bytes, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::Io, dir.string(), "cannot create folder: " + ec.message());
  const auto path = dir / (file_hash(bytes) + kCalibrationExtension);
  write_file_atomically(path, bytes.data(), bytes.size());
  return path;
}

CalibrationFile load(const std::filesystem::path& path) {
  const std::string data = read_file(path);
  return parse({reinterpret_cast<const std::uint8_t*>(data.data()), data.size()}, path.string());
}

std::vector<std::uint8_t> read_by_hash(const std::string& hash, const std::filesystem::path& dir) {
  const std::filesystem::path d = dir.empty() ? default_calibration_dir() : dir;
  const auto path = d / (hash + kCalibrationExtension);
  if (!std::filesystem::exists(path))
    throw Error(ErrorCode::Io, path.string(),
                "calibration " + hash + " not found (pass its folder as the calibration dir)");
  const std::string data = read_file(path);
  std::vector<std::uint8_t> bytes(data.begin(), data.end());
  if (file_hash(bytes) != hash)
    throw Error(ErrorCode::Checksum, path.string(), "calibration content does not match its hash");
  return bytes;
}

CalibrationFile load_by_hash(const std::string& hash, const std::filesystem::path& dir) {
  const auto bytes = read_by_hash(hash, dir);
  return parse(bytes,
               (dir.empty() ? default_calibration_dir() : dir).string() + "/" + hash + kCalibrationExtension);
}

}  // namespace kvscope::codec::calibration
