// SPDX-License-Identifier: Apache-2.0
// Malformed files give clear kvscope::Error (never crashes), failed exports
// leave nothing behind, and existing files are never silently replaced.
// Bad files are built with the HDF5 C API (then re-stamped so the whole-file
// checksum passes and the structural check is what fires) or by byte edits.
#include <hdf5.h>

#include "hdf5_test_util.h"

namespace kvscope {
namespace {

using test::TempDir;

/// Path of a small valid file in `dir`.
std::filesystem::path valid_file(const TempDir& dir, const std::string& name = "ok.h5") {
  const auto path = dir / name;
  io::export_hdf5(path, test::contents_for(test::make_cache(), codec::all_codecs().front()->name()));
  return path;
}

/// Runs `edit` on the file opened read-write with the HDF5 C API, then
/// re-stamps the KVScope block.
template <typename Edit>
void edit_file(const std::filesystem::path& path, Edit edit) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  edit(file);
  ASSERT_GE(H5Fclose(file), 0);
  test::restamp(path);
}

// Attributes are edited through H5Oopen + H5Aopen: HDF5 1.10's
// H5Aopen_by_name handle cannot be written ("can't locate open attribute").
void replace_attr_with_string(hid_t loc, const char* obj, const char* name, const char* value) {
  const hid_t o = H5Oopen(loc, obj, H5P_DEFAULT);
  ASSERT_GE(o, 0);
  ASSERT_GE(H5Adelete(o, name), 0);
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, std::strlen(value) + 1);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t attr = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  ASSERT_GE(H5Awrite(attr, type, value), 0);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  H5Oclose(o);
}

void set_int_attr(hid_t loc, const char* obj, const char* name, std::int64_t value) {
  const hid_t o = H5Oopen(loc, obj, H5P_DEFAULT);
  ASSERT_GE(o, 0);
  const hid_t attr = H5Aopen(o, name, H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT64, &value), 0);
  H5Aclose(attr);
  H5Oclose(o);
}

/// Imports `path` and returns the error; fails the test if none is thrown.
Error import_error(const std::filesystem::path& path, io::Hdf5ImportOptions options = {}) {
  try {
    io::import_hdf5(path, options);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "import of " << path << " succeeded";
  return Error(ErrorCode::Internal, "no error");
}

void expect_error(const Error& e, ErrorCode code, const std::string& needle,
                  const std::filesystem::path& path) {
  EXPECT_EQ(e.code(), code) << e.what();
  EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  EXPECT_EQ(e.file(), path.string()) << e.what();
}

TEST(Hdf5Errors, MissingGroup) {
  TempDir dir("miss");
  const auto path = valid_file(dir);
  edit_file(path, [](hid_t f) { ASSERT_GE(H5Ldelete(f, "/model", H5P_DEFAULT), 0); });
  expect_error(import_error(path), ErrorCode::Format, "missing group /model", path);
}

TEST(Hdf5Errors, MissingLevelAndBitstream) {
  TempDir dir("missl");
  const auto a = valid_file(dir, "a.h5");
  edit_file(a, [](hid_t f) { ASSERT_GE(H5Ldelete(f, "/levels/0/bitstream", H5P_DEFAULT), 0); });
  expect_error(import_error(a), ErrorCode::Format, "missing dataset /levels/0/bitstream", a);
  const auto b = valid_file(dir, "b.h5");
  edit_file(b, [](hid_t f) { ASSERT_GE(H5Ldelete(f, "/levels/0", H5P_DEFAULT), 0); });
  expect_error(import_error(b), ErrorCode::Format, "missing group /levels/0", b);
}

TEST(Hdf5Errors, WrongDatasetType) {
  TempDir dir("type");
  const auto path = valid_file(dir);
  edit_file(path, [](hid_t f) {
    ASSERT_GE(H5Ldelete(f, "/levels/0/bitstream", H5P_DEFAULT), 0);
    const hsize_t dims[1] = {4};
    const float values[4] = {1, 2, 3, 4};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t d =
        H5Dcreate2(f, "/levels/0/bitstream", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(d, 0);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
    H5Dclose(d);
    H5Sclose(space);
  });
  expect_error(import_error(path), ErrorCode::Format, "/levels/0/bitstream has the wrong type", path);
}

TEST(Hdf5Errors, WrongAttributeType) {
  TempDir dir("atype");
  const auto path = valid_file(dir);
  edit_file(path, [](hid_t f) { replace_attr_with_string(f, "/model", "layers", "two"); });
  expect_error(import_error(path), ErrorCode::Format, "/model@layers has the wrong type", path);
}

TEST(Hdf5Errors, GroupWhereDatasetExpected) {
  TempDir dir("kind");
  const auto path = valid_file(dir);
  edit_file(path, [](hid_t f) {
    ASSERT_GE(H5Ldelete(f, "/context/token_ids", H5P_DEFAULT), 0);
    const hid_t g = H5Gcreate2(f, "/context/token_ids", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(g, 0);
    H5Gclose(g);
  });
  expect_error(import_error(path), ErrorCode::Format, "/context/token_ids is not a dataset", path);
}

TEST(Hdf5Errors, InconsistentValues) {
  TempDir dir("incons");
  const auto a = valid_file(dir, "a.h5");
  edit_file(a, [](hid_t f) { set_int_attr(f, "/model", "tokens", 5); });  // 24 token ids stored
  expect_error(import_error(a), ErrorCode::Format, "token_ids", a);
  const auto b = valid_file(dir, "b.h5");
  edit_file(b, [](hid_t f) { set_int_attr(f, "/model", "layers", -3); });
  expect_error(import_error(b), ErrorCode::Format, "out of range", b);
  const auto c = valid_file(dir, "c.h5");
  edit_file(c, [](hid_t f) { set_int_attr(f, "/levels", "count", 2); });
  expect_error(import_error(c), ErrorCode::Format, "missing group /levels/1", c);
}

TEST(Hdf5Errors, TruncatedFile) {
  TempDir dir("trunc");
  const auto path = valid_file(dir);
  auto bytes = test::read_all(path);
  bytes.resize(bytes.size() / 2);
  test::write_all(path, bytes);
  expect_error(import_error(path), ErrorCode::Format, "truncated", path);
  // Without the whole-file check, HDF5's own check still reports it.
  io::Hdf5ImportOptions unchecked;
  unchecked.verify_file_checksum = false;
  expect_error(import_error(path, unchecked), ErrorCode::Format, "not a readable HDF5 file", path);
  // Cut inside the KVScope block itself.
  bytes.resize(100);
  test::write_all(path, bytes);
  expect_error(import_error(path), ErrorCode::Format, "truncated: 100 bytes", path);
  bytes.resize(30);  // inside the block's text
  test::write_all(path, bytes);
  expect_error(import_error(path), ErrorCode::Format, "damaged", path);
}

TEST(Hdf5Errors, WholeFileChecksumMismatch) {
  TempDir dir("crc");
  const auto path = valid_file(dir);
  auto bytes = test::read_all(path);
  bytes[bytes.size() - 10] ^= 0x40;
  test::write_all(path, bytes);
  expect_error(import_error(path), ErrorCode::Checksum, "CRC32C mismatch", path);
}

TEST(Hdf5Errors, DatasetChecksumMismatch) {
  TempDir dir("dcrc");
  const auto path = valid_file(dir);
  edit_file(path, [](hid_t f) {
    const hid_t d = H5Dopen2(f, "/levels/0/bitstream", H5P_DEFAULT);
    ASSERT_GE(d, 0);
    const hid_t space = H5Dget_space(d);
    std::vector<std::uint8_t> data(std::size_t(H5Sget_simple_extent_npoints(space)));
    H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data());
    data[data.size() / 2] ^= 0x01;
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data());
    H5Sclose(space);
    H5Dclose(d);
  });
  expect_error(import_error(path), ErrorCode::Checksum, "/levels/0/bitstream", path);
  // Token ids are checked too.
  const auto b = valid_file(dir, "b.h5");
  edit_file(b, [](hid_t f) {
    const hid_t d = H5Dopen2(f, "/context/token_ids", H5P_DEFAULT);
    const std::int32_t v = 99;
    const hsize_t start[1] = {0}, count[1] = {1};
    const hid_t space = H5Dget_space(d);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t mem = H5Screate_simple(1, count, nullptr);
    H5Dwrite(d, H5T_NATIVE_INT32, mem, space, H5P_DEFAULT, &v);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(d);
  });
  expect_error(import_error(b), ErrorCode::Checksum, "token_ids", b);
}

TEST(Hdf5Errors, NewerFormatVersion) {
  TempDir dir("ver");
  const auto a = valid_file(dir, "a.h5");
  test::restamp(a, io::kHdf5FormatVersion + 1);
  expect_error(import_error(a), ErrorCode::Unsupported, "newer KVScope", a);
  const auto b = valid_file(dir, "b.h5");
  edit_file(b, [](hid_t f) { set_int_attr(f, "/", "format_version", io::kHdf5FormatVersion + 1); });
  expect_error(import_error(b), ErrorCode::Unsupported, "newer KVScope", b);
}

TEST(Hdf5Errors, NotAKVScopeFile) {
  TempDir dir("alien");
  const auto junk = dir / "junk.h5";
  test::write_all(junk, std::vector<std::uint8_t>(2000, 0x5a));
  expect_error(import_error(junk), ErrorCode::Format, "not a KVScope HDF5 file", junk);
  io::Hdf5ImportOptions unchecked;
  unchecked.verify_file_checksum = false;
  expect_error(import_error(junk, unchecked), ErrorCode::Format, "not a readable HDF5 file", junk);

  const auto plain = dir / "plain.h5";
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fcreate(plain.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  H5Fclose(f);
  expect_error(import_error(plain), ErrorCode::Format, "without KVScope's checksum block", plain);
  expect_error(import_error(plain, unchecked), ErrorCode::Format, "missing attribute /@format", plain);

  const auto missing = dir / "missing.h5";
  expect_error(import_error(missing), ErrorCode::Io, "no such file", missing);
}

TEST(Hdf5Errors, ExportFailureLeavesNoFile) {
  TempDir dir("fail");
  const auto contents = test::contents_for(test::make_cache(), codec::all_codecs().front()->name());
  // Folder does not exist.
  EXPECT_THROW(io::export_hdf5(dir / "nope" / "x.h5", contents), Error);
  EXPECT_TRUE(dir.entries().empty());
  // Unknown parameter: refused before anything is written.
  auto bad = contents;
  bad.levels[0].config.params["no_such_param"] = "1";
  try {
    io::export_hdf5(dir / "x.h5", bad);
    ADD_FAILURE() << "unknown parameter accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("no_such_param"), std::string::npos);
  }
  EXPECT_TRUE(dir.entries().empty());
}

TEST(Hdf5Errors, ExportRefusesInvalidOrMismatchedBitstreams) {
  TempDir dir("badbs");
  const kv::KVCache cache = test::make_cache();
  const std::string name = codec::all_codecs().front()->name();
  auto expect_refused = [&](const io::Hdf5Contents& contents, const std::string& needle) {
    try {
      io::export_hdf5(dir / "x.h5", contents);
      ADD_FAILURE() << "exported: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_TRUE(dir.entries().empty());
  };
  auto corrupt = test::contents_for(cache, name);
  corrupt.levels[0].bitstream[corrupt.levels[0].bitstream.size() / 2] ^= 0x10;
  expect_refused(corrupt, "not a valid KVScope bitstream");
  auto truncated = test::contents_for(cache, name);
  truncated.levels[0].bitstream.resize(truncated.levels[0].bitstream.size() - 1);
  expect_refused(truncated, "not a valid KVScope bitstream");
  auto shape = test::contents_for(cache, name);
  shape.shape.tokens += 1;
  shape.info.token_ids.clear();
  shape.info.positions.clear();
  expect_refused(shape, "shape");
  if (codec::all_codecs().size() > 1) {
    auto renamed = test::contents_for(cache, name);
    renamed.levels[0].config.codec = codec::all_codecs().back()->name();
    expect_refused(renamed, "encoded by " + name);
  }
  io::Hdf5Contents none;
  none.shape = cache.shape();
  expect_refused(none, "no encoded level");
}

TEST(Hdf5Errors, CancelLeavesNoFileAtEveryStage) {
  TempDir dir("cancel");
  const kv::KVCache cache = test::make_cache();
  auto contents = test::contents_for(cache, codec::all_codecs().front()->name());
  contents.reference = cache;
  io::Hdf5ExportOptions options;
  options.include_reference = true;
  // Count the checkpoints, then cancel at each one in turn.
  int checkpoints = 0;
  options.progress = [&](double, std::string_view) { return ++checkpoints > 0; };
  io::export_hdf5(dir / "full.h5", contents, options);
  std::filesystem::remove(dir / "full.h5");
  ASSERT_GE(checkpoints, 4);
  for (int stop = 1; stop < checkpoints; ++stop) {  // the last report is after the rename
    int calls = 0;
    options.progress = [&](double, std::string_view) { return ++calls < stop; };
    try {
      io::export_hdf5(dir / "c.h5", contents, options);
      ADD_FAILURE() << "not cancelled at checkpoint " << stop;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Cancelled) << e.what();
    }
    EXPECT_TRUE(dir.entries().empty()) << "left behind after cancel at checkpoint " << stop;
  }
}

TEST(Hdf5Errors, NoOverwriteWithoutFlag) {
  TempDir dir("ow");
  const auto path = dir / "x.h5";
  test::write_all(path, {'k', 'e', 'e', 'p'});
  const auto contents = test::contents_for(test::make_cache(), codec::all_codecs().front()->name());
  try {
    io::export_hdf5(path, contents);
    ADD_FAILURE() << "overwrote without the flag";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find("exists"), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::read_all(path), (std::vector<std::uint8_t>{'k', 'e', 'e', 'p'}));
  EXPECT_EQ(dir.entries().size(), 1u);
  io::Hdf5ExportOptions options;
  options.overwrite = true;
  io::export_hdf5(path, contents, options);
  EXPECT_EQ(io::import_hdf5(path).levels[0].bitstream, contents.levels[0].bitstream);
  EXPECT_EQ(dir.entries().size(), 1u);
}

}  // namespace
}  // namespace kvscope
