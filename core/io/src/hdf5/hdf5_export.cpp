// SPDX-License-Identifier: Apache-2.0
// Export of encoded caches to the HDF5 container (docs/hdf5-format.md).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "h5_util.h"
#include "hdf5_schema.h"
#include "kvscope/codec/bitstream.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/fp16.h"
#include "kvscope/common/paths.h"
#include "kvscope/common/version.h"
#include "kvscope/io/hdf5_container.h"

namespace kvscope::io {
namespace fs = std::filesystem;
using h5::Handle;

namespace {

std::string utc_now_iso8601() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

/// Removes the temporary file unless released (after the final rename).
class TempFile {
 public:
  explicit TempFile(fs::path path) : path_(std::move(path)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove(path_, ec);
    }
  }
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

fs::path temp_path_for(const fs::path& path) {
  std::random_device rd;
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  return dir /
         ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
}

/// What export writes for one level besides its bytes.
struct LevelPlan {
  std::string codec;       ///< as the bitstream's header names it
  codec::ParamSet params;  ///< every parameter, effective values
  std::vector<Hdf5Section> sections;
};

/// The bitstream's byte ranges, in order and tiling it: the container header,
/// then each section (section header + payload) the codec lists; any bytes
/// between or after them become "other" ranges so the table still tiles.
std::vector<Hdf5Section> sections_from_stream(const codec::StreamInfo& info) {
  auto listed = info.sections;
  std::stable_sort(listed.begin(), listed.end(),
                   [](const auto& a, const auto& b) { return a.offset < b.offset; });
  std::vector<Hdf5Section> out;
  std::uint64_t pos = 0;
  auto fill_to = [&](std::uint64_t until) {
    if (until <= pos) return;
    Hdf5Section gap;
    gap.offset = pos;
    gap.length = until - pos;
    gap.kind = pos == 0 ? "header" : "other";
    out.push_back(gap);
    pos = until;
  };
  std::map<std::pair<int, int>, int> chunks_seen;  // per (layer, kv)
  for (const auto& sec : listed) {
    const std::uint64_t end = sec.payload_offset + sec.payload_bytes;
    if (sec.offset < pos || end < sec.offset) continue;  // overlapping: not representable as a tiling
    fill_to(sec.offset);
    Hdf5Section s;
    s.offset = sec.offset;
    s.length = end - sec.offset;
    s.layer = sec.layer;
    s.kv = static_cast<int>(sec.kv);
    if (sec.kind == codec::SectionKind::Table) {
      s.kind = "table";
    } else {
      s.kind = "chunk";
      s.chunk = chunks_seen[{sec.layer, s.kv}]++;
      s.token_begin = sec.token_begin;
      s.token_end = sec.token_begin + sec.token_count;
    }
    out.push_back(s);
    pos = end;
  }
  fill_to(info.total_bytes);
  return out;
}

/// Checks a level against its own bitstream header and gathers what is
/// written besides the bytes. Throws Error(InvalidArgument) before any file
/// is created.
LevelPlan plan_level(const Hdf5Level& level, std::size_t index, const kv::CacheShape& shape,
                     const Hdf5ExportOptions& options) {
  const std::string which = "HDF5 export: level " + std::to_string(index);
  codec::StreamInfo info;
  try {
    info = codec::inspect_stream(level.bitstream);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidArgument, which + " is not a valid KVScope bitstream: " + e.what());
  }
  require(level.config.codec.empty() || level.config.codec == info.codec, ErrorCode::InvalidArgument,
          which + " names codec " + level.config.codec + " but its bitstream was encoded by " + info.codec);
  require(info.shape == shape, ErrorCode::InvalidArgument,
          which + ": the bitstream's cache shape differs from the file's");
  LevelPlan plan;
  plan.codec = info.codec;
  plan.params = info.params;  // as encoded: the truth
  if (options.complete_params) {
    const codec::Codec& c = codec::find_codec(info.codec);
    std::set<std::string> known;
    for (const auto& spec : c.params(&shape)) known.insert(spec.name);
    // What a parameter the header leaves out meant at the stream's layout
    // version, not today's default (codec::stream_params()).
    try {
      plan.params = codec::stream_params(info);
    } catch (const Error& e) {
      throw Error(ErrorCode::InvalidArgument, which + ": " + e.what());
    }
    for (const auto& [key, value] : level.config.params) {
      require(known.count(key) > 0, ErrorCode::InvalidArgument,
              which + ": codec " + info.codec + " has no parameter '" + key + "' (value '" + value + "')");
    }
  }
  plan.sections = level.sections.empty() ? sections_from_stream(info) : level.sections;
  return plan;
}

void validate(const Hdf5Contents& c, const Hdf5ExportOptions& options) {
  const auto& s = c.shape;
  require(s.layers >= 0 && s.kv_heads >= 0 && s.tokens >= 0 && s.head_dim >= 0, ErrorCode::InvalidArgument,
          "HDF5 export: cache shape has a negative dimension");
  require(!c.levels.empty(), ErrorCode::InvalidArgument, "HDF5 export: no encoded level to write");
  require(c.info.token_ids.empty() || c.info.token_ids.size() == std::size_t(s.tokens),
          ErrorCode::InvalidArgument,
          "HDF5 export: " + std::to_string(c.info.token_ids.size()) + " token ids for a cache of " +
              std::to_string(s.tokens) + " tokens");
  require(c.info.positions.empty() || c.info.positions.size() == std::size_t(s.tokens),
          ErrorCode::InvalidArgument, "HDF5 export: positions do not match the token count");
  require(options.deflate_level >= 0 && options.deflate_level <= 9, ErrorCode::InvalidArgument,
          "HDF5 export: deflate level must be 0-9");
  for (std::size_t i = 0; i < c.levels.size(); ++i) {
    const auto& level = c.levels[i];
    for (const auto& sec : level.sections) {
      require(sec.offset <= level.bitstream.size() && sec.length <= level.bitstream.size() - sec.offset,
              ErrorCode::InvalidArgument,
              "HDF5 export: a section of level " + std::to_string(i) + " lies outside its bitstream");
      require(sec.kind.size() < 16, ErrorCode::InvalidArgument,
              "HDF5 export: section kind '" + sec.kind + "' is longer than 15 bytes");
    }
  }
  if (options.include_reference) {
    require(c.reference.has_value(), ErrorCode::InvalidArgument,
            "HDF5 export: reference data requested but none given");
    require(c.reference->shape() == s, ErrorCode::InvalidArgument,
            "HDF5 export: the reference cache's shape differs from the encoded cache's");
  }
}

void write_model(const h5::Ctx& ctx, hid_t file, const Hdf5Contents& c) {
  Handle g = h5::create_group(ctx, file, schema::kModel);
  h5::write_attr_string(ctx, g, "name", c.info.model_name);
  h5::write_attr_string(ctx, g, "architecture", c.info.architecture);
  h5::write_attr_string(ctx, g, "sha256", c.info.model_sha256);
  h5::write_attr_i64(ctx, g, "layers", c.shape.layers);
  h5::write_attr_i64(ctx, g, "kv_heads", c.shape.kv_heads);
  h5::write_attr_i64(ctx, g, "head_dim", c.shape.head_dim);
  h5::write_attr_i64(ctx, g, "tokens", c.shape.tokens);
  h5::write_attr_i64(ctx, g, "rope_applied", c.info.rope_applied ? 1 : 0);
  h5::write_attr_f64(ctx, g, "rope_theta", c.info.rope_theta);
}

void write_i32(const h5::Ctx& ctx, hid_t loc, const std::string& name, const std::vector<std::int32_t>& v) {
  h5::write_dataset_1d(ctx, loc, name, H5T_STD_I32LE, H5T_NATIVE_INT32, v.data(), v.size(),
                       std::span(reinterpret_cast<const std::uint8_t*>(v.data()), v.size() * 4));
}

void write_context(const h5::Ctx& ctx, hid_t file, const Hdf5Contents& c, bool include_text) {
  Handle g = h5::create_group(ctx, file, schema::kContext);
  write_i32(ctx, g, "token_ids", c.info.token_ids);
  write_i32(ctx, g, "positions", c.info.positions);
  const bool has_text = include_text && c.text.has_value();
  h5::write_attr_i64(ctx, g, "has_text", has_text ? 1 : 0);
  if (has_text) h5::write_string_dataset(ctx, g, "text", *c.text);
}

Handle section_file_type(const h5::Ctx& ctx) {
  Handle kind(ctx.check(H5Tcopy(H5T_C_S1), "cannot create a string type"), H5Tclose);
  H5Tset_size(kind, 16);
  H5Tset_strpad(kind, H5T_STR_NULLPAD);
  Handle t(ctx.check(H5Tcreate(H5T_COMPOUND, sizeof(schema::SectionRow)), "cannot create the section type"),
           H5Tclose);
  using R = schema::SectionRow;
  ctx.check_status(H5Tinsert(t, "offset", offsetof(R, offset), H5T_STD_U64LE), "section type");
  ctx.check_status(H5Tinsert(t, "length", offsetof(R, length), H5T_STD_U64LE), "section type");
  ctx.check_status(H5Tinsert(t, "crc32c", offsetof(R, crc32c), H5T_STD_U32LE), "section type");
  ctx.check_status(H5Tinsert(t, "chunk", offsetof(R, chunk), H5T_STD_I32LE), "section type");
  ctx.check_status(H5Tinsert(t, "layer", offsetof(R, layer), H5T_STD_I32LE), "section type");
  ctx.check_status(H5Tinsert(t, "kv", offsetof(R, kv), H5T_STD_I32LE), "section type");
  ctx.check_status(H5Tinsert(t, "token_begin", offsetof(R, token_begin), H5T_STD_I32LE), "section type");
  ctx.check_status(H5Tinsert(t, "token_end", offsetof(R, token_end), H5T_STD_I32LE), "section type");
  ctx.check_status(H5Tinsert(t, "kind", offsetof(R, kind), kind), "section type");
  return t;
}

void write_level(const h5::Ctx& ctx, hid_t levels, int index, const Hdf5Level& level, const LevelPlan& plan,
                 const Hdf5Contents& c) {
  Handle g = h5::create_group(ctx, levels, std::to_string(index));
  h5::write_attr_i64(ctx, g, "index", index);
  h5::write_attr_string(ctx, g, "codec", plan.codec);
  h5::write_attr_string(ctx, g, "label", level.label);
  h5::write_attr_i64(ctx, g, "encoded_bytes", static_cast<std::int64_t>(level.bitstream.size()));
  const double elements = double(c.shape.elements());
  h5::write_attr_f64(ctx, g, "bits_per_element",
                     elements > 0 ? 8.0 * double(level.bitstream.size()) / elements : 0.0);
  Handle pg = h5::create_group(ctx, g, "params");
  for (const auto& [key, value] : plan.params) h5::write_attr_string(ctx, pg, key, value);

  h5::write_dataset_1d(ctx, g, "bitstream", H5T_STD_U8LE, H5T_NATIVE_UINT8, level.bitstream.data(),
                       level.bitstream.size(), level.bitstream);

  std::vector<schema::SectionRow> rows;
  for (const auto& sec : plan.sections) {
    schema::SectionRow row{};
    row.offset = sec.offset;
    row.length = sec.length;
    row.crc32c = crc32c(std::span(level.bitstream).subspan(sec.offset, sec.length));
    row.chunk = sec.chunk;
    row.layer = sec.layer;
    row.kv = sec.kv;
    row.token_begin = sec.token_begin;
    row.token_end = sec.token_end;
    std::memcpy(row.kind, sec.kind.data(), sec.kind.size());
    rows.push_back(row);
  }
  Handle type = section_file_type(ctx);
  h5::write_dataset_1d(ctx, g, "sections", type, type, rows.data(), rows.size(),
                       std::span(reinterpret_cast<const std::uint8_t*>(rows.data()),
                                 rows.size() * sizeof(schema::SectionRow)));
}

/// The calibration profile a level was encoded with: a parameter named
/// "profile" (cachegen's) naming an existing file. Levels using different
/// profiles cannot share the one /calibration group.
std::optional<Hdf5Calibration> find_calibration(const Hdf5Contents& c, const std::vector<LevelPlan>& plans) {
  std::optional<Hdf5Calibration> found;
  for (std::size_t i = 0; i < c.levels.size(); ++i) {
    std::string file;
    for (const codec::ParamSet* params : {&c.levels[i].config.params, &plans[i].params}) {
      const auto it = params->find("profile");
      if (file.empty() && it != params->end()) file = it->second;
    }
    std::error_code ec;
    if (file.empty() || !fs::is_regular_file(file, ec)) continue;
    const std::string data = read_file(file);
    Hdf5Calibration cal;
    cal.name = fs::path(file).filename().string();
    cal.bytes.assign(data.begin(), data.end());
    cal.hash = codec::calibration::profile_hash(cal.bytes);
    require(!found || found->hash == cal.hash, ErrorCode::InvalidArgument,
            "HDF5 export: levels use different calibration profiles; a file holds one");
    found = std::move(cal);
  }
  return found;
}

void write_calibration(const h5::Ctx& ctx, hid_t file, const Hdf5Calibration& cal) {
  Handle g = h5::create_group(ctx, file, schema::kCalibration);
  h5::write_attr_string(ctx, g, "name", cal.name);
  h5::write_attr_string(ctx, g, "hash", cal.hash);
  h5::write_dataset_1d(ctx, g, "profile", H5T_STD_U8LE, H5T_NATIVE_UINT8, cal.bytes.data(), cal.bytes.size(),
                       cal.bytes);
}

void write_reference(const h5::Ctx& ctx, hid_t file, const kv::KVCache& ref, const Hdf5ExportOptions& options,
                     double progress_begin, double progress_end) {
  const auto& s = ref.shape();
  Handle g = h5::create_group(ctx, file, schema::kReference);
  h5::write_attr_string(ctx, g, "layout",
                        "[layer][kind: 0=key, 1=value][kv_head][token][head_dim], IEEE float16");
  const hsize_t dims[5] = {hsize_t(s.layers), 2, hsize_t(s.kv_heads), hsize_t(s.tokens), hsize_t(s.head_dim)};
  Handle space(ctx.check(H5Screate_simple(5, dims, nullptr), "cannot create the reference dataspace"),
               H5Sclose);
  Handle dcpl(ctx.check(H5Pcreate(H5P_DATASET_CREATE), "cannot create a property list"), H5Pclose);
  const std::size_t per_token = std::size_t(s.kv_heads) * s.head_dim;
  if (s.elements() > 0) {
    // Chunks of about 128 KiB: one (layer, kind) and a run of tokens.
    const hsize_t tokens =
        std::clamp<hsize_t>(65536 / std::max<std::size_t>(per_token, 1), 1, hsize_t(s.tokens));
    const hsize_t chunk[5] = {1, 1, hsize_t(s.kv_heads), tokens, hsize_t(s.head_dim)};
    ctx.check_status(H5Pset_chunk(dcpl, 5, chunk), "cannot set reference chunking");
    if (H5Zfilter_avail(H5Z_FILTER_SHUFFLE) > 0) ctx.check_status(H5Pset_shuffle(dcpl), "cannot set shuffle");
    if (options.deflate_level > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
      ctx.check_status(H5Pset_deflate(dcpl, unsigned(options.deflate_level)), "cannot set deflate");
    }
  }
  Handle fp16 = h5::make_fp16_type(ctx);
  Handle dset(ctx.check(H5Dcreate2(g, "cache", fp16, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                        "cannot create dataset /reference/cache"),
              H5Dclose);
  // One (layer, kind) slab at a time: bounded memory, progress and cancel.
  std::uint32_t crc = 0;
  std::vector<std::uint16_t> half(s.tensor_elements());
  const hsize_t slab[5] = {1, 1, hsize_t(s.kv_heads), hsize_t(s.tokens), hsize_t(s.head_dim)};
  Handle mem_space(ctx.check(H5Screate_simple(5, slab, nullptr), "cannot create a dataspace"), H5Sclose);
  const int slabs = s.layers * 2;
  for (int i = 0; i < slabs && s.elements() > 0; ++i) {
    report_progress(options.progress, progress_begin + (progress_end - progress_begin) * i / slabs,
                    "writing reference data");
    const auto values = ref.tensor(i / 2, kv::kKinds[i % 2]);
    for (std::size_t j = 0; j < values.size(); ++j) half[j] = float_to_half(values[j]);
    const hsize_t start[5] = {hsize_t(i / 2), hsize_t(i % 2), 0, 0, 0};
    ctx.check_status(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, slab, nullptr),
                     "cannot select reference slab");
    ctx.check_status(H5Dwrite(dset, fp16, mem_space, space, H5P_DEFAULT, half.data()),
                     "cannot write dataset /reference/cache");
    crc = crc32c(std::span(reinterpret_cast<const std::uint8_t*>(half.data()), half.size() * 2), crc);
  }
  h5::write_attr_u32(ctx, dset, "crc32c", crc);
}

/// Moves the finished temporary file into place; without `overwrite` a file
/// that appeared meanwhile is never replaced (link() fails on an existing name).
void move_into_place(const fs::path& tmp, const fs::path& path, bool overwrite) {
  if (overwrite) {
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec)
      throw Error(ErrorCode::Io, path.string(),
                  "cannot rename the temporary file into place: " + ec.message());
    return;
  }
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    if (err == EEXIST) {
      throw Error(ErrorCode::Io, path.string(),
                  "file exists (pass the overwrite flag, --force, to replace it)");
    }
    throw Error(ErrorCode::Io, path.string(),
                std::string("cannot move the temporary file into place: ") + std::strerror(err));
  }
  std::error_code ec;
  fs::remove(tmp, ec);
}

}  // namespace

Hdf5Contents hdf5_contents_from_bitstream(std::vector<std::uint8_t> bitstream, std::string label) {
  const codec::StreamInfo info = codec::inspect_stream(bitstream);
  Hdf5Contents c;
  c.shape = info.shape;
  c.info = info.info;
  Hdf5Level level;
  level.config = {info.codec, info.params};
  level.bitstream = std::move(bitstream);
  level.label = std::move(label);
  c.levels.push_back(std::move(level));
  return c;
}

bool is_hdf5_path(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return char(std::tolower(ch)); });
  return ext == ".h5" || ext == ".hdf5";
}

Hdf5ExportResult export_hdf5(const fs::path& path, const Hdf5Contents& contents,
                             const Hdf5ExportOptions& options) {
  const std::lock_guard<std::mutex> lock(h5::library_mutex());
  const auto t0 = std::chrono::steady_clock::now();
  h5::silence_errors();
  validate(contents, options);
  std::vector<LevelPlan> plans;
  for (std::size_t i = 0; i < contents.levels.size(); ++i) {
    plans.push_back(plan_level(contents.levels[i], i, contents.shape, options));
  }
  const std::string name = path.string();
  const std::optional<Hdf5Calibration> calibration = contents.calibration || !options.embed_calibration
                                                         ? contents.calibration
                                                         : find_calibration(contents, plans);
  std::error_code ec;
  if (!options.overwrite && fs::exists(path, ec)) {
    throw Error(ErrorCode::Io, name, "file exists (pass the overwrite flag, --force, to replace it)");
  }
  report_progress(options.progress, 0.0, "writing HDF5 metadata");

  TempFile tmp(temp_path_for(path));
  const h5::Ctx ctx{name, ErrorCode::Io};
  {
    Handle fcpl(ctx.check(H5Pcreate(H5P_FILE_CREATE), "cannot create a property list"), H5Pclose);
    ctx.check_status(H5Pset_userblock(fcpl, kHdf5UserBlockBytes), "cannot reserve the user block");
    Handle file(H5Fcreate(tmp.path().c_str(), H5F_ACC_EXCL, fcpl, H5P_DEFAULT), H5Fclose);
    if (file.get() < 0)
      h5::fail(ErrorCode::Io, name, "cannot create the temporary file " + tmp.path().string());

    h5::write_attr_string(ctx, file, "format", kHdf5FormatName);
    h5::write_attr_i64(ctx, file, "format_version", kHdf5FormatVersion);
    h5::write_attr_string(ctx, file, "kvscope_version", kVersion);
    h5::write_attr_string(ctx, file, "created_utc", utc_now_iso8601());
    write_model(ctx, file, contents);
    write_context(ctx, file, contents, options.include_text);
    if (calibration) write_calibration(ctx, file, *calibration);

    const bool with_reference = options.include_reference;
    const double levels_end = with_reference ? 0.3 : 0.95;
    Handle levels = h5::create_group(ctx, file, schema::kLevels);
    h5::write_attr_i64(ctx, levels, "count", static_cast<std::int64_t>(contents.levels.size()));
    for (std::size_t i = 0; i < contents.levels.size(); ++i) {
      report_progress(options.progress, levels_end * double(i) / double(contents.levels.size()),
                      "writing level " + std::to_string(i));
      write_level(ctx, levels, int(i), contents.levels[i], plans[i], contents);
    }
    levels.close();
    if (with_reference) write_reference(ctx, file, *contents.reference, options, levels_end, 0.95);
    report_progress(options.progress, 0.95, "closing HDF5 file");
    if (!file.close()) h5::fail(ErrorCode::Io, name, "cannot finish writing the temporary file");
  }
  schema::stamp_user_block(tmp.path(), name, kHdf5FormatVersion);
  report_progress(options.progress, 0.99, "moving file into place");
  move_into_place(tmp.path(), path, options.overwrite);
  tmp.release();

  Hdf5ExportResult result;
  result.file_bytes = fs::file_size(path, ec);
  for (const auto& level : contents.levels) result.bitstream_bytes += level.bitstream.size();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (options.progress) options.progress(1.0, "done");  // too late to cancel: the file is in place
  return result;
}

}  // namespace kvscope::io
