// SPDX-License-Identifier: Apache-2.0
// Import of the HDF5 container (docs/hdf5-format.md). Every value is checked
// before use: types, ranks and sizes before reading, CRC32C after.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>

#include "h5_util.h"
#include "hdf5_schema.h"
#include "kvscope/codec/calibration.h"
#include "kvscope/common/crc32c.h"
#include "kvscope/common/fp16.h"
#include "kvscope/io/hdf5_container.h"

namespace kvscope::io {
namespace fs = std::filesystem;
using h5::Handle;

namespace {

constexpr std::int64_t kMaxDim = 1 << 24;

int read_dim(const h5::Ctx& ctx, hid_t g, const char* name) {
  const std::int64_t v = h5::read_attr_int(ctx, g, schema::kModel, name);
  if (v < 0 || v > kMaxDim) {
    throw Error(ErrorCode::Format, ctx.file,
                std::string("/model@") + name + " is out of range: " + std::to_string(v));
  }
  return static_cast<int>(v);
}

void read_model(const h5::Ctx& ctx, hid_t file, Hdf5Contents& c) {
  Handle g = h5::open_group(ctx, file, schema::kModel);
  c.info.model_name = h5::read_attr_string(ctx, g, schema::kModel, "name");
  c.info.architecture = h5::read_attr_string(ctx, g, schema::kModel, "architecture");
  c.info.model_sha256 = h5::read_attr_string(ctx, g, schema::kModel, "sha256");
  c.shape.layers = read_dim(ctx, g, "layers");
  c.shape.kv_heads = read_dim(ctx, g, "kv_heads");
  c.shape.head_dim = read_dim(ctx, g, "head_dim");
  c.shape.tokens = read_dim(ctx, g, "tokens");
  const double elements = 2.0 * c.shape.layers * c.shape.kv_heads * double(c.shape.tokens) * c.shape.head_dim;
  if (elements > double(std::int64_t(1) << 40)) {
    throw Error(ErrorCode::Format, ctx.file, "/model describes an implausibly large cache");
  }
  c.info.rope_applied = h5::read_attr_int(ctx, g, schema::kModel, "rope_applied") != 0;
  c.info.rope_theta = h5::read_attr_f64(ctx, g, schema::kModel, "rope_theta");
}

void read_context(const h5::Ctx& ctx, hid_t file, Hdf5Contents& c) {
  Handle g = h5::open_group(ctx, file, schema::kContext);
  const auto tokens = std::uint64_t(c.shape.tokens);
  c.info.token_ids = h5::read_i32(ctx, g, "/context/token_ids", tokens);
  c.info.positions = h5::read_i32(ctx, g, "/context/positions", tokens);
  if (!c.info.token_ids.empty() && c.info.token_ids.size() != tokens) {
    throw Error(ErrorCode::Format, ctx.file, "/context/token_ids does not match /model@tokens");
  }
  if (!c.info.positions.empty() && c.info.positions.size() != tokens) {
    throw Error(ErrorCode::Format, ctx.file, "/context/positions does not match /model@tokens");
  }
  if (h5::read_attr_int(ctx, g, schema::kContext, "has_text") != 0) {
    c.text = h5::read_string_dataset(ctx, g, "/context/text");
  }
}

Handle section_memory_type(const h5::Ctx& ctx) {
  Handle kind(ctx.check(H5Tcopy(H5T_C_S1), "cannot create a string type"), H5Tclose);
  H5Tset_size(kind, 16);
  H5Tset_strpad(kind, H5T_STR_NULLPAD);
  using R = schema::SectionRow;
  Handle t(ctx.check(H5Tcreate(H5T_COMPOUND, sizeof(R)), "cannot create the section type"), H5Tclose);
  H5Tinsert(t, "offset", offsetof(R, offset), H5T_NATIVE_UINT64);
  H5Tinsert(t, "length", offsetof(R, length), H5T_NATIVE_UINT64);
  H5Tinsert(t, "crc32c", offsetof(R, crc32c), H5T_NATIVE_UINT32);
  H5Tinsert(t, "chunk", offsetof(R, chunk), H5T_NATIVE_INT32);
  H5Tinsert(t, "layer", offsetof(R, layer), H5T_NATIVE_INT32);
  H5Tinsert(t, "kv", offsetof(R, kv), H5T_NATIVE_INT32);
  H5Tinsert(t, "token_begin", offsetof(R, token_begin), H5T_NATIVE_INT32);
  H5Tinsert(t, "token_end", offsetof(R, token_end), H5T_NATIVE_INT32);
  H5Tinsert(t, "kind", offsetof(R, kind), kind);
  return t;
}

std::vector<Hdf5Section> read_sections(const h5::Ctx& ctx, hid_t level, const std::string& where,
                                       const std::vector<std::uint8_t>& bitstream) {
  const std::string path = where + "/sections";
  Handle dset = h5::open_dataset(ctx, level, path);
  // Rows tile the bitstream and every part is at least 16 bytes (the
  // container prefix; sections have 24-byte headers).
  const std::uint64_t n =
      h5::check_1d(ctx, dset, path, H5T_COMPOUND, sizeof(schema::SectionRow), bitstream.size() / 16 + 1);
  std::vector<schema::SectionRow> rows(n);
  std::memset(rows.data(), 0, rows.size() * sizeof(schema::SectionRow));
  Handle mem = section_memory_type(ctx);
  if (n > 0 && H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()) < 0) {
    h5::fail(ErrorCode::Format, ctx.file, "cannot read " + path + " (wrong record layout?)");
  }
  h5::verify_crc(ctx, dset, path,
                 crc32c(std::span(reinterpret_cast<const std::uint8_t*>(rows.data()),
                                  rows.size() * sizeof(schema::SectionRow))));
  std::vector<Hdf5Section> out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    if (r.offset > bitstream.size() || r.length > bitstream.size() - r.offset) {
      throw Error(ErrorCode::Format, ctx.file,
                  path + "[" + std::to_string(i) + "] lies outside the bitstream");
    }
    const std::uint32_t crc = crc32c(std::span(bitstream).subspan(r.offset, r.length));
    if (crc != r.crc32c) {
      throw Error(ErrorCode::Checksum, ctx.file,
                  path + "[" + std::to_string(i) + "]: section CRC32C mismatch");
    }
    Hdf5Section s;
    s.offset = r.offset;
    s.length = r.length;
    s.crc32c = r.crc32c;
    s.chunk = r.chunk;
    s.layer = r.layer;
    s.kv = r.kv;
    s.token_begin = r.token_begin;
    s.token_end = r.token_end;
    s.kind.assign(r.kind, strnlen(r.kind, sizeof r.kind));
    out.push_back(std::move(s));
  }
  return out;
}

Hdf5Level read_level(const h5::Ctx& ctx, hid_t levels, int index, std::uint64_t max_bytes) {
  const std::string where = schema::level_path(index);
  Handle g = h5::open_group(ctx, levels, where);
  Hdf5Level level;
  if (h5::read_attr_int(ctx, g, where, "index") != index) {
    throw Error(ErrorCode::Format, ctx.file, where + "@index does not match the group name");
  }
  level.config.codec = h5::read_attr_string(ctx, g, where, "codec");
  level.label = h5::read_attr_string(ctx, g, where, "label");
  Handle params = h5::open_group(ctx, g, where + "/params");
  for (const auto& key : h5::attr_names(ctx, params, where + "/params")) {
    level.config.params[key] = h5::read_attr_string(ctx, params, where + "/params", key);
  }
  level.bitstream = h5::read_bytes(ctx, g, where + "/bitstream", max_bytes);
  if (h5::read_attr_int(ctx, g, where, "encoded_bytes") !=
      static_cast<std::int64_t>(level.bitstream.size())) {
    throw Error(ErrorCode::Format, ctx.file, where + "@encoded_bytes does not match the bitstream's size");
  }
  level.sections = read_sections(ctx, g, where, level.bitstream);
  return level;
}

void read_calibration(const h5::Ctx& ctx, hid_t file, Hdf5Contents& c, std::uint64_t max_bytes) {
  Handle g = h5::open_group(ctx, file, schema::kCalibration);
  Hdf5Calibration cal;
  cal.name = h5::read_attr_string(ctx, g, schema::kCalibration, "name");
  cal.hash = h5::read_attr_string(ctx, g, schema::kCalibration, "hash");
  cal.bytes = h5::read_bytes(ctx, g, std::string(schema::kCalibration) + "/profile", max_bytes);
  c.calibration = std::move(cal);
}

void read_reference(const h5::Ctx& ctx, hid_t file, Hdf5Contents& c, const Hdf5ImportOptions& options) {
  const ProgressFn& progress = options.progress;
  const std::string path = std::string(schema::kReference) + "/cache";
  Handle dset = h5::open_dataset(ctx, file, path);
  Handle type(H5Dget_type(dset), H5Tclose);
  if (type.get() < 0 || H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 2) {
    h5::take_error_message();
    throw Error(ErrorCode::Format, ctx.file, path + " has the wrong type (expected float16)");
  }
  const auto& s = c.shape;
  Handle space(H5Dget_space(dset), H5Sclose);
  hsize_t dims[5] = {};
  if (space.get() < 0 || H5Sget_simple_extent_ndims(space) != 5 ||
      H5Sget_simple_extent_dims(space, dims, nullptr) != 5 || dims[0] != hsize_t(s.layers) || dims[1] != 2 ||
      dims[2] != hsize_t(s.kv_heads) || dims[3] != hsize_t(s.tokens) || dims[4] != hsize_t(s.head_dim)) {
    h5::take_error_message();
    throw Error(ErrorCode::Format, ctx.file, path + " does not have the shape /model describes");
  }
  codec::require_within_limit(s.elements(), options.max_elements, ctx.file + ": " + path);
  h5::check_storage(ctx, dset, path, std::uint64_t(s.elements()) * 2);
  kv::KVCache ref(s);
  ref.info = c.info;
  Handle fp16 = h5::make_fp16_type(ctx);
  const hsize_t slab[5] = {1, 1, hsize_t(s.kv_heads), hsize_t(s.tokens), hsize_t(s.head_dim)};
  Handle mem_space(ctx.check(H5Screate_simple(5, slab, nullptr), "cannot create a dataspace"), H5Sclose);
  std::vector<std::uint16_t> half(s.tensor_elements());
  std::uint32_t crc = 0;
  const int slabs = s.layers * 2;
  for (int i = 0; i < slabs && s.elements() > 0; ++i) {
    report_progress(progress, 0.5 + 0.5 * i / slabs, "reading reference data");
    const hsize_t start[5] = {hsize_t(i / 2), hsize_t(i % 2), 0, 0, 0};
    if (H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, slab, nullptr) < 0 ||
        H5Dread(dset, fp16, mem_space, space, H5P_DEFAULT, half.data()) < 0) {
      h5::fail(ErrorCode::Format, ctx.file, "cannot read " + path);
    }
    crc = crc32c(std::span(reinterpret_cast<const std::uint8_t*>(half.data()), half.size() * 2), crc);
    auto out = ref.tensor(i / 2, kv::kKinds[i % 2]);
    for (std::size_t j = 0; j < half.size(); ++j) out[j] = half_to_float(half[j]);
  }
  h5::verify_crc(ctx, dset, path, crc);
  c.reference = std::move(ref);
}

/// A private temporary folder, removed with its contents at scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("kvscope-profiles-" + std::to_string(::getpid()) + "-" +
                                         std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

namespace {

Hdf5Contents import_unchecked(const fs::path& path, const Hdf5ImportOptions& options) {
  const std::string name = path.string();
  h5::silence_errors();
  report_progress(options.progress, 0.0, "checking HDF5 file");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(ErrorCode::Io, name, "no such file");
  const std::uint64_t file_bytes = options.verify_file_checksum
                                       ? schema::verify_user_block(path, kHdf5FormatVersion)
                                       : fs::file_size(path, ec);
  const h5::Ctx ctx{name, ErrorCode::Format};

  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file.get() < 0) h5::fail(ErrorCode::Format, name, "not a readable HDF5 file");

  Hdf5Contents c;
  if (h5::read_attr_string(ctx, file, "/", "format") != kHdf5FormatName) {
    throw Error(ErrorCode::Format, name,
                std::string("not a KVScope encoded-cache file (/@format is not '") + kHdf5FormatName + "')");
  }
  const std::int64_t version = h5::read_attr_int(ctx, file, "/", "format_version");
  if (version > kHdf5FormatVersion) {
    throw Error(ErrorCode::Unsupported, name,
                "written in HDF5 format version " + std::to_string(version) +
                    " by a newer KVScope; this build reads up to version " +
                    std::to_string(kHdf5FormatVersion));
  }
  if (version < 1)
    throw Error(ErrorCode::Format, name, "/@format_version is invalid: " + std::to_string(version));
  c.format_version = static_cast<int>(version);
  c.kvscope_version = h5::read_attr_string(ctx, file, "/", "kvscope_version");
  c.created_utc = h5::read_attr_string(ctx, file, "/", "created_utc");

  read_model(ctx, file, c);
  read_context(ctx, file, c);
  if (h5::exists(file, schema::kCalibration)) read_calibration(ctx, file, c, file_bytes);

  Handle levels = h5::open_group(ctx, file, schema::kLevels);
  const std::int64_t count = h5::read_attr_int(ctx, levels, schema::kLevels, "count");
  if (count < 1 || count > 4096) {
    throw Error(ErrorCode::Format, name, "/levels@count is out of range: " + std::to_string(count));
  }
  for (int i = 0; i < count; ++i) {
    report_progress(options.progress, 0.1 + 0.4 * i / double(count), "reading level " + std::to_string(i));
    c.levels.push_back(read_level(ctx, levels, i, file_bytes));
  }
  c.has_reference = h5::exists(file, std::string(schema::kReference) + "/cache");
  if (c.has_reference && options.load_reference) read_reference(ctx, file, c, options);
  report_progress(options.progress, 1.0, "done");
  return c;
}

// This process's resident memory now (/proc/self/statm), 0 when unknown.
std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * std::uint64_t(::sysconf(_SC_PAGESIZE));
}

// Parses the file in a forked child with the same options and returns when
// the child finished, whether it imported or threw a kvscope::Error (the
// caller's own import then throws the same error); a Format error when HDF5
// crashed or hung in it (docs/hostile-input.md).
void parse_in_child(const fs::path& path, const Hdf5ImportOptions& options) {
  const std::string name = path.string();
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  const double timeout = options.isolate_timeout_seconds > 0 ? options.isolate_timeout_seconds
                                                             : 30.0 + double(ec ? 0 : size) / 20e6;
  const std::uint64_t resident_at_fork = resident_bytes();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error(ErrorCode::Io, name, std::string("cannot create a pipe: ") + std::strerror(errno));
  // _Fork, not fork: fork() runs the process's atfork handlers, and Debian
  // 12's OpenBLAS (0.3.21) registers one that joins its worker threads and
  // can wait for ever (it hung the app's import after a prefill). The child
  // only runs HDF5, which the library lock held here keeps to this thread,
  // and then _exits; should it block anyway, the timeout below kills it.
  const pid_t pid = ::_Fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(ErrorCode::Io, name,
                std::string("cannot start the HDF5 check process: ") + std::strerror(errno));
  }
  if (pid == 0) {  // child: import, say it finished, _exit (no destructors, atexit handlers or leak checks)
    ::close(fds[0]);
    try {
      Hdf5ImportOptions o;
      o.load_reference = options.load_reference;
      o.verify_file_checksum = options.verify_file_checksum;
      o.max_elements = options.max_elements;
      o.isolate = false;
      (void)import_unchecked(path, o);
    } catch (const std::exception&) {
    }
    const char done = 1;
    while (::write(fds[1], &done, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
  char done = 0;
  bool finished = false, timed_out = false;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
            .count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    const int r = ::poll(&pfd, 1, int(std::min<long long>(left, 1000)));
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    const ssize_t got = ::read(fds[0], &done, 1);
    if (got < 0 && errno == EINTR) continue;
    finished = got == 1 && done == 1;
    break;  // a result, or the pipe closed without one (the child died)
  }
  if (timed_out) ::kill(pid, SIGKILL);
  ::close(fds[0]);
  int wstatus = 0;
  rusage usage{};
  while (::wait4(pid, &wstatus, 0, &usage) < 0 && errno == EINTR) {
  }
  if (timed_out)
    throw Error(ErrorCode::Format, name,
                "HDF5 did not finish reading the file in " + std::to_string(int(timeout)) +
                    " s (a malformed file; docs/hostile-input.md)");
  if (!finished) {
    const std::string how = WIFSIGNALED(wstatus)
                                ? "crashed (signal " + std::to_string(WTERMSIG(wstatus)) + ")"
                                : "stopped without a result";
    throw Error(ErrorCode::Format, name, "the HDF5 library " + how + " reading this file (a malformed file)");
  }
  // A file whose reading made HDF5 itself allocate far more than the file and
  // the caps allow is refused here, before this process reads it too (HDF5
  // allocates with malloc, outside the caps; docs/hostile-input.md).
  const std::uint64_t peak = std::uint64_t(usage.ru_maxrss) * 1024;
  const std::uint64_t grew = peak > resident_at_fork ? peak - resident_at_fork : 0;
  const std::uint64_t cap_bytes = options.max_elements > (std::uint64_t(1) << 58)
                                      ? std::numeric_limits<std::uint64_t>::max() / 2
                                      : 8 * std::uint64_t(options.max_elements);
  const std::uint64_t allowed = (std::uint64_t(1) << 30) + cap_bytes + 16 * std::uint64_t(ec ? 0 : size);
  if (grew > allowed)
    throw Error(ErrorCode::Format, name,
                "the HDF5 library needed " + std::to_string(grew >> 20) +
                    " MiB to read this file, more than " + std::to_string(allowed >> 20) +
                    " MiB for its size and the element cap (a malformed file; docs/hostile-input.md)");
}

}  // namespace

Hdf5Contents import_hdf5(const fs::path& path, const Hdf5ImportOptions& options) {
  try {
    const std::lock_guard<std::mutex> lock(h5::library_mutex());
    if (options.isolate) parse_in_child(path, options);
    return import_unchecked(path, options);
  } catch (const std::bad_alloc&) {
    // Every size is checked against the file and the caps first; this is a
    // machine with less memory left than the caps assume.
    throw Error(ErrorCode::Unsupported, path.string(), "not enough memory to import it");
  } catch (const std::length_error&) {
    throw Error(ErrorCode::Unsupported, path.string(), "a size it declares is too large to allocate");
  }
}

kv::KVCache decode_hdf5_level(const Hdf5Contents& contents, int level, const codec::DecodeOptions& options) {
  require(level >= 0 && std::size_t(level) < contents.levels.size(), ErrorCode::InvalidArgument,
          "HDF5 file has " + std::to_string(contents.levels.size()) + " level(s); level " +
              std::to_string(level) + " does not exist");
  codec::DecodeOptions effective = options;
  std::optional<ScratchDir> profiles;
  if (contents.calibration && options.profile_dir.empty()) {
    profiles.emplace();
    codec::calibration::save_profile(contents.calibration->bytes, profiles->path());
    effective.profile_dir = profiles->path().string();
  }
  kv::KVCache cache = codec::decode(contents.levels[std::size_t(level)].bitstream, effective);
  if (!(cache.shape() == contents.shape)) {
    throw Error(ErrorCode::Format,
                "level " + std::to_string(level) +
                    " decodes to a cache whose shape differs from the one /model describes");
  }
  auto& info = cache.info;
  if (info.model_name.empty()) info.model_name = contents.info.model_name;
  if (info.architecture.empty()) info.architecture = contents.info.architecture;
  if (info.model_sha256.empty()) info.model_sha256 = contents.info.model_sha256;
  if (info.token_ids.empty()) info.token_ids = contents.info.token_ids;
  if (info.positions.empty()) info.positions = contents.info.positions;
  return cache;
}

}  // namespace kvscope::io
