// SPDX-License-Identifier: Apache-2.0
#include "h5_util.h"

#include <bit>
#include <cstring>

#include "kvscope/common/crc32c.h"

namespace kvscope::io::h5 {

std::mutex& library_mutex() {
  static std::mutex m;
  return m;
}

static_assert(std::endian::native == std::endian::little,
              "checksums are defined over little-endian bytes; add byte swapping for this host");

bool Handle::close() {
  if (id_ < 0 || closer_ == nullptr) return true;
  const herr_t status = closer_(id_);
  id_ = -1;
  return status >= 0;
}

void silence_errors() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  H5Eclear2(H5E_DEFAULT);
}

namespace {

herr_t collect_innermost(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  // Walking downward, the last entry is the innermost, most specific reason.
  auto* out = static_cast<std::string*>(data);
  if (err != nullptr && err->desc != nullptr && err->desc[0] != '\0') {
    *out = err->desc;
  } else if (err != nullptr) {
    char minor[256] = {};
    if (H5Eget_msg(err->min_num, nullptr, minor, sizeof minor) > 0) *out = minor;
  }
  return 0;
}

Handle make_vlen_utf8() {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t >= 0) {
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
  }
  return Handle(t, H5Tclose);
}

std::string describe(const std::string& where, const std::string& name) {
  return name.empty() ? where : where + "@" + name;
}

void write_scalar_attr(const Ctx& ctx, hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type,
                       const void* value) {
  Handle space(ctx.check(H5Screate(H5S_SCALAR), "cannot create dataspace"), H5Sclose);
  Handle attr(ctx.check(H5Acreate2(obj, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT),
                        "cannot create attribute " + name),
              H5Aclose);
  ctx.check_status(H5Awrite(attr, mem_type, value), "cannot write attribute " + name);
}

Handle open_attr(const Ctx& ctx, hid_t obj, const std::string& where, const std::string& name) {
  const htri_t found = H5Aexists(obj, name.c_str());
  if (found <= 0) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file, "missing attribute " + describe(where, name));
  }
  hid_t id = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  if (id < 0) fail(ErrorCode::Format, ctx.file, "cannot open attribute " + describe(where, name));
  return Handle(id, H5Aclose);
}

/// Attribute must hold exactly one value.
void require_single(const Ctx& ctx, hid_t attr, const std::string& what) {
  Handle space(H5Aget_space(attr), H5Sclose);
  const hssize_t n = space.get() < 0 ? -1 : H5Sget_simple_extent_npoints(space);
  if (n != 1) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file, what + " must hold a single value");
  }
}

H5T_class_t attr_class(const Ctx& ctx, hid_t attr, const std::string& what, Handle& type) {
  type = Handle(H5Aget_type(attr), H5Tclose);
  if (type.get() < 0) fail(ErrorCode::Format, ctx.file, "cannot read the type of " + what);
  return H5Tget_class(type);
}

}  // namespace

std::string take_error_message() {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_innermost, &message);
  H5Eclear2(H5E_DEFAULT);
  return message;
}

void fail(ErrorCode code, const std::string& file, const std::string& what) {
  const std::string reason = take_error_message();
  throw Error(code, file, reason.empty() ? what : what + " (HDF5: " + reason + ")");
}

// ---- writing ---------------------------------------------------------------

Handle create_group(const Ctx& ctx, hid_t loc, const std::string& name) {
  return Handle(ctx.check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                          "cannot create group " + name),
                H5Gclose);
}

void write_attr_string(const Ctx& ctx, hid_t obj, const std::string& name, const std::string& value) {
  Handle type = make_vlen_utf8();
  ctx.check(type, "cannot create string type");
  const char* ptr = value.c_str();
  write_scalar_attr(ctx, obj, name, type, type, &ptr);
}

void write_attr_i64(const Ctx& ctx, hid_t obj, const std::string& name, std::int64_t value) {
  write_scalar_attr(ctx, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void write_attr_u32(const Ctx& ctx, hid_t obj, const std::string& name, std::uint32_t value) {
  write_scalar_attr(ctx, obj, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, &value);
}

void write_attr_f64(const Ctx& ctx, hid_t obj, const std::string& name, double value) {
  write_scalar_attr(ctx, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

void write_dataset_1d(const Ctx& ctx, hid_t loc, const std::string& name, hid_t type_in_file,
                      hid_t type_in_memory, const void* data, std::uint64_t count,
                      std::span<const std::uint8_t> raw_bytes) {
  const hsize_t dims[1] = {count};
  Handle space(ctx.check(H5Screate_simple(1, dims, nullptr), "cannot create dataspace for " + name),
               H5Sclose);
  Handle dset(
      ctx.check(H5Dcreate2(loc, name.c_str(), type_in_file, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                "cannot create dataset " + name),
      H5Dclose);
  if (count > 0) {
    ctx.check_status(H5Dwrite(dset, type_in_memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                     "cannot write dataset " + name);
  }
  write_attr_u32(ctx, dset, "crc32c", crc32c(raw_bytes));
}

void write_string_dataset(const Ctx& ctx, hid_t loc, const std::string& name, const std::string& value) {
  Handle type = make_vlen_utf8();
  ctx.check(type, "cannot create string type");
  Handle space(ctx.check(H5Screate(H5S_SCALAR), "cannot create dataspace"), H5Sclose);
  Handle dset(ctx.check(H5Dcreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                        "cannot create dataset " + name),
              H5Dclose);
  const char* ptr = value.c_str();
  ctx.check_status(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &ptr), "cannot write dataset " + name);
  write_attr_u32(ctx, dset, "crc32c",
                 crc32c(std::span(reinterpret_cast<const std::uint8_t*>(value.data()), value.size())));
}

// ---- reading ---------------------------------------------------------------

bool exists(hid_t loc, const std::string& path) {
  // H5Lexists fails (rather than returning false) when an intermediate group
  // is missing, so check each prefix in turn.
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    if (prefix.empty() || prefix == "/") continue;
    if (H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) {
      take_error_message();
      return false;
    }
  }
  return true;
}

Handle open_group(const Ctx& ctx, hid_t loc, const std::string& path) {
  if (!exists(loc, path)) throw Error(ErrorCode::Format, ctx.file, "missing group " + path);
  H5O_info_t info{};
  if (H5Oget_info_by_name2(loc, path.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
      info.type != H5O_TYPE_GROUP) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file, path + " is not a group");
  }
  hid_t id = H5Gopen2(loc, path.c_str(), H5P_DEFAULT);
  if (id < 0) fail(ErrorCode::Format, ctx.file, "cannot open group " + path);
  return Handle(id, H5Gclose);
}

Handle open_dataset(const Ctx& ctx, hid_t loc, const std::string& path) {
  if (!exists(loc, path)) throw Error(ErrorCode::Format, ctx.file, "missing dataset " + path);
  H5O_info_t info{};
  if (H5Oget_info_by_name2(loc, path.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
      info.type != H5O_TYPE_DATASET) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file, path + " is not a dataset");
  }
  hid_t id = H5Dopen2(loc, path.c_str(), H5P_DEFAULT);
  if (id < 0) fail(ErrorCode::Format, ctx.file, "cannot open dataset " + path);
  return Handle(id, H5Dclose);
}

bool has_attr(hid_t obj, const std::string& name) {
  const htri_t found = H5Aexists(obj, name.c_str());
  if (found < 0) take_error_message();
  return found > 0;
}

std::string read_attr_string(const Ctx& ctx, hid_t obj, const std::string& where, const std::string& name) {
  const std::string what = "attribute " + describe(where, name);
  Handle attr = open_attr(ctx, obj, where, name);
  Handle type;
  if (attr_class(ctx, attr, what, type) != H5T_STRING) {
    throw Error(ErrorCode::Format, ctx.file, what + " has the wrong type (expected a string)");
  }
  require_single(ctx, attr, what);
  const htri_t is_vlen = H5Tis_variable_str(type);
  if (is_vlen < 0) fail(ErrorCode::Format, ctx.file, "cannot read the type of " + what);
  if (is_vlen > 0) {
    Handle mem = make_vlen_utf8();
    char* value = nullptr;
    if (H5Aread(attr, mem, &value) < 0) fail(ErrorCode::Format, ctx.file, "cannot read " + what);
    std::string out = value != nullptr ? std::string(value) : std::string();
    H5free_memory(value);
    return out;
  }
  const std::size_t size = H5Tget_size(type);
  if (size == 0 || size > (1u << 20)) throw Error(ErrorCode::Format, ctx.file, what + " has an invalid size");
  Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem, size);
  std::string buffer(size, '\0');
  if (H5Aread(attr, mem, buffer.data()) < 0) fail(ErrorCode::Format, ctx.file, "cannot read " + what);
  buffer.resize(std::strlen(buffer.c_str()));
  return buffer;
}

std::int64_t read_attr_int(const Ctx& ctx, hid_t obj, const std::string& where, const std::string& name) {
  const std::string what = "attribute " + describe(where, name);
  Handle attr = open_attr(ctx, obj, where, name);
  Handle type;
  if (attr_class(ctx, attr, what, type) != H5T_INTEGER) {
    throw Error(ErrorCode::Format, ctx.file, what + " has the wrong type (expected an integer)");
  }
  require_single(ctx, attr, what);
  std::int64_t value = 0;
  if (H5Aread(attr, H5T_NATIVE_INT64, &value) < 0) fail(ErrorCode::Format, ctx.file, "cannot read " + what);
  return value;
}

double read_attr_f64(const Ctx& ctx, hid_t obj, const std::string& where, const std::string& name) {
  const std::string what = "attribute " + describe(where, name);
  Handle attr = open_attr(ctx, obj, where, name);
  Handle type;
  const H5T_class_t cls = attr_class(ctx, attr, what, type);
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
    throw Error(ErrorCode::Format, ctx.file, what + " has the wrong type (expected a number)");
  }
  require_single(ctx, attr, what);
  double value = 0;
  if (H5Aread(attr, H5T_NATIVE_DOUBLE, &value) < 0) fail(ErrorCode::Format, ctx.file, "cannot read " + what);
  return value;
}

namespace {
herr_t collect_attr(hid_t /*loc*/, const char* name, const H5A_info_t* /*info*/, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}
herr_t collect_link(hid_t /*loc*/, const char* name, const H5L_info_t* /*info*/, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> attr_names(const Ctx& ctx, hid_t obj, const std::string& where) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &names) < 0) {
    fail(ErrorCode::Format, ctx.file, "cannot list the attributes of " + where);
  }
  return names;
}

std::vector<std::string> link_names(const Ctx& ctx, hid_t loc, const std::string& where) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Literate(loc, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link, &names) < 0) {
    fail(ErrorCode::Format, ctx.file, "cannot list the members of " + where);
  }
  return names;
}

std::uint64_t check_1d(const Ctx& ctx, hid_t dset, const std::string& where, H5T_class_t cls,
                       std::size_t elem_size, std::uint64_t max_count) {
  Handle type(H5Dget_type(dset), H5Tclose);
  if (type.get() < 0) fail(ErrorCode::Format, ctx.file, "cannot read the type of " + where);
  if (H5Tget_class(type) != cls || H5Tget_size(type) != elem_size) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file, where + " has the wrong type");
  }
  Handle space(H5Dget_space(dset), H5Sclose);
  if (space.get() < 0) fail(ErrorCode::Format, ctx.file, "cannot read the shape of " + where);
  if (H5Sget_simple_extent_ndims(space) != 1) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file, where + " must be one-dimensional");
  }
  hsize_t dims[1] = {0};
  H5Sget_simple_extent_dims(space, dims, nullptr);
  if (dims[0] > max_count) {
    throw Error(ErrorCode::Format, ctx.file,
                where + " has " + std::to_string(dims[0]) + " elements, more than the " +
                    std::to_string(max_count) + " possible");
  }
  check_storage(ctx, dset, where, std::uint64_t(dims[0]) * elem_size);
  return dims[0];
}

void check_storage(const Ctx& ctx, hid_t dset, const std::string& where, std::uint64_t bytes) {
  // What the file really stores for the dataset: a dataset whose chunks
  // were never written (HDF5 returns fill values), or that claims more than
  // deflate could have compressed into its storage, is refused before its
  // declared size is allocated.
  const std::uint64_t stored = H5Dget_storage_size(dset);
  take_error_message();
  if (bytes > stored * kMaxCompressionRatio + kStorageSlackBytes) {
    throw Error(ErrorCode::Format, ctx.file,
                where + " declares " + std::to_string(bytes) + " bytes but the file stores only " +
                    std::to_string(stored) + " bytes for it (a sparse or lying dataset)");
  }
}

void verify_crc(const Ctx& ctx, hid_t obj, const std::string& where, std::uint32_t crc) {
  const std::int64_t stored = read_attr_int(ctx, obj, where, "crc32c");
  if (stored != static_cast<std::int64_t>(crc)) {
    throw Error(ErrorCode::Checksum, ctx.file, where + ": CRC32C mismatch (the data was altered or damaged)");
  }
}

std::vector<std::uint8_t> read_bytes(const Ctx& ctx, hid_t loc, const std::string& path,
                                     std::uint64_t max_count) {
  Handle dset = open_dataset(ctx, loc, path);
  const std::uint64_t n = check_1d(ctx, dset, path, H5T_INTEGER, 1, max_count);
  std::vector<std::uint8_t> out(n);
  if (n > 0 && H5Dread(dset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0) {
    fail(ErrorCode::Format, ctx.file, "cannot read " + path);
  }
  verify_crc(ctx, dset, path, crc32c(out));
  return out;
}

std::vector<std::int32_t> read_i32(const Ctx& ctx, hid_t loc, const std::string& path,
                                   std::uint64_t max_count) {
  Handle dset = open_dataset(ctx, loc, path);
  const std::uint64_t n = check_1d(ctx, dset, path, H5T_INTEGER, 4, max_count);
  std::vector<std::int32_t> out(n);
  if (n > 0 && H5Dread(dset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0) {
    fail(ErrorCode::Format, ctx.file, "cannot read " + path);
  }
  verify_crc(ctx, dset, path,
             crc32c(std::span(reinterpret_cast<const std::uint8_t*>(out.data()), out.size() * 4)));
  return out;
}

std::string read_string_dataset(const Ctx& ctx, hid_t loc, const std::string& path) {
  Handle dset = open_dataset(ctx, loc, path);
  Handle type(H5Dget_type(dset), H5Tclose);
  if (type.get() < 0 || H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) <= 0) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file,
                path + " has the wrong type (expected a variable-length string)");
  }
  Handle space(H5Dget_space(dset), H5Sclose);
  if (space.get() < 0 || H5Sget_simple_extent_npoints(space) != 1) {
    take_error_message();
    throw Error(ErrorCode::Format, ctx.file, path + " must hold a single string");
  }
  Handle mem = make_vlen_utf8();
  char* value = nullptr;
  if (H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0) {
    fail(ErrorCode::Format, ctx.file, "cannot read " + path);
  }
  std::string out = value != nullptr ? std::string(value) : std::string();
  H5free_memory(value);
  verify_crc(ctx, dset, path,
             crc32c(std::span(reinterpret_cast<const std::uint8_t*>(out.data()), out.size())));
  return out;
}

Handle make_fp16_type(const Ctx& ctx) {
  // Same construction as h5py's float16, so numpy sees dtype float16.
  Handle t(ctx.check(H5Tcopy(H5T_IEEE_F32LE), "cannot create the float16 type"), H5Tclose);
  ctx.check_status(H5Tset_fields(t, 15, 10, 5, 0, 10), "cannot create the float16 type");
  ctx.check_status(H5Tset_size(t, 2), "cannot create the float16 type");
  ctx.check_status(H5Tset_ebias(t, 15), "cannot create the float16 type");
  return t;
}

}  // namespace kvscope::io::h5
