// SPDX-License-Identifier: Apache-2.0
#pragma once

// Internal helpers over HDF5's C API: RAII handles, error capture and typed
// attribute/dataset access that validates types before reading. The C API is
// used (not the C++ one) so that every failure becomes a kvscope::Error with
// HDF5's own reason attached, and nothing is printed to stderr.

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvscope/common/error.h"

namespace kvscope::io::h5 {

/// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) { other.id_ = -1; }
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      closer_ = other.closer_;
      other.id_ = -1;
    }
    return *this;
  }
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles are passed to the C API everywhere
  /// Closes now; returns false when HDF5 reports a failure (e.g. a flush on close).
  bool close();

 private:
  void reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = -1;
  }
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

/// Held by every KVScope call into HDF5 (export, import): import forks a
/// child that parses the file, and a fork while another thread is inside
/// HDF5 (holding its global lock) would leave the child waiting forever.
std::mutex& library_mutex();

/// Turns HDF5's automatic error printing off for the calling thread (error
/// settings are per thread in thread-safe builds) and clears its stack.
void silence_errors();

/// HDF5's most specific error message on this thread's stack ("" if none);
/// clears the stack.
std::string take_error_message();

/// Throws Error(code, file, what + HDF5's reason).
[[noreturn]] void fail(ErrorCode code, const std::string& file, const std::string& what);

/// Context for reading or writing one file: its name for messages and the
/// error code used for structural problems.
struct Ctx {
  std::string file;
  ErrorCode code = ErrorCode::Io;  ///< Io while writing, Format while reading

  /// Returns `id` or throws when it is negative.
  hid_t check(hid_t id, const std::string& what) const {
    if (id < 0) fail(code, file, what);
    return id;
  }
  void check_status(herr_t status, const std::string& what) const {
    if (status < 0) fail(code, file, what);
  }
};

// ---- writing ---------------------------------------------------------------
Handle create_group(const Ctx& ctx, hid_t loc, const std::string& name);
void write_attr_string(const Ctx& ctx, hid_t obj, const std::string& name, const std::string& value);
void write_attr_i64(const Ctx& ctx, hid_t obj, const std::string& name, std::int64_t value);
void write_attr_u32(const Ctx& ctx, hid_t obj, const std::string& name, std::uint32_t value);
void write_attr_f64(const Ctx& ctx, hid_t obj, const std::string& name, double value);
/// A 1-D dataset of `type_in_file` written from `data` (memory type
/// `type_in_memory`), with attribute crc32c = CRC32C of `raw_bytes`.
void write_dataset_1d(const Ctx& ctx, hid_t loc, const std::string& name, hid_t type_in_file,
                      hid_t type_in_memory, const void* data, std::uint64_t count,
                      std::span<const std::uint8_t> raw_bytes);
/// A scalar variable-length UTF-8 string dataset with its crc32c attribute.
void write_string_dataset(const Ctx& ctx, hid_t loc, const std::string& name, const std::string& value);

// ---- reading (every check throws Error(Format) naming the object) ----------
bool exists(hid_t loc, const std::string& path);
Handle open_group(const Ctx& ctx, hid_t loc, const std::string& path);
Handle open_dataset(const Ctx& ctx, hid_t loc, const std::string& path);
bool has_attr(hid_t obj, const std::string& name);
std::string read_attr_string(const Ctx& ctx, hid_t obj, const std::string& where, const std::string& name);
std::int64_t read_attr_int(const Ctx& ctx, hid_t obj, const std::string& where, const std::string& name);
double read_attr_f64(const Ctx& ctx, hid_t obj, const std::string& where, const std::string& name);
/// Names of the attributes of `obj`, in creation order.
std::vector<std::string> attr_names(const Ctx& ctx, hid_t obj, const std::string& where);
/// Names of the links (groups/datasets) in group `loc`.
std::vector<std::string> link_names(const Ctx& ctx, hid_t loc, const std::string& where);

/// Number of elements of a 1-D dataset whose type class and element size are
/// as expected; rejects other ranks and counts above `max_count`.
std::uint64_t check_1d(const Ctx& ctx, hid_t dset, const std::string& where, H5T_class_t cls,
                       std::size_t elem_size, std::uint64_t max_count);
/// Largest ratio of a dataset's logical bytes to the bytes the file stores for
/// it that import accepts: deflate's limit (about 1032:1) plus headroom.
inline constexpr std::uint64_t kMaxCompressionRatio = 1100;
/// Bytes a dataset may declare beyond kMaxCompressionRatio x its storage
/// (small datasets, HDF5's own rounding).
inline constexpr std::uint64_t kStorageSlackBytes = 1 << 16;
/// Throws Error(Format) naming both numbers when a dataset declares `bytes`
/// of data but the file stores too few for them (unwritten chunks read as
/// fill values; a hostile file can declare terabytes in a few bytes).
void check_storage(const Ctx& ctx, hid_t dset, const std::string& where, std::uint64_t bytes);
/// Reads a 1-D uint8 dataset and verifies its crc32c attribute.
std::vector<std::uint8_t> read_bytes(const Ctx& ctx, hid_t loc, const std::string& path,
                                     std::uint64_t max_count);
/// Reads a 1-D int32 dataset and verifies its crc32c attribute (over the
/// little-endian bytes).
std::vector<std::int32_t> read_i32(const Ctx& ctx, hid_t loc, const std::string& path,
                                   std::uint64_t max_count);
/// Reads a scalar string dataset and verifies its crc32c attribute.
std::string read_string_dataset(const Ctx& ctx, hid_t loc, const std::string& path);
/// Throws Error(Checksum) unless the object's crc32c attribute equals `crc`.
void verify_crc(const Ctx& ctx, hid_t obj, const std::string& where, std::uint32_t crc);

/// The IEEE half-precision type h5py and numpy call float16 (HDF5 1.10 has
/// no predefined one). Little-endian.
Handle make_fp16_type(const Ctx& ctx);

}  // namespace kvscope::io::h5
