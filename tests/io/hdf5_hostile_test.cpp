// SPDX-License-Identifier: Apache-2.0
// Hostile HDF5 files (issue #18, docs/hostile-input.md): datasets that
// declare far more data than the file stores (unwritten chunks read as fill
// values, so a few bytes can "hold" terabytes) are refused naming both
// numbers before anything is allocated, and the reference cache is checked
// against the import cap. The whole-file checksum is recomputed after each
// edit, as an attacker would.
#include <hdf5.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "fuzz_outcome.h"
#include "hdf5_test_util.h"

namespace kvscope {
namespace {

using test::TempDir;

template <typename Edit>
void edit_file(const std::filesystem::path& path, Edit edit) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  edit(file);
  ASSERT_GE(H5Fclose(file), 0);
  test::restamp(path);
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

// Replaces dataset `path` by a chunked one of `type` and `dims` whose chunks
// are never written (HDF5 stores nothing and reads fill values).
void make_sparse(hid_t f, const char* path, hid_t type, std::vector<hsize_t> dims) {
  ASSERT_GE(H5Ldelete(f, path, H5P_DEFAULT), 0);
  const hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  std::vector<hsize_t> chunk(dims.size(), 1);
  chunk.back() = std::min<hsize_t>(dims.back(), 4096);
  ASSERT_GE(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), 0);
  const hid_t d = H5Dcreate2(f, path, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  const hid_t aspace = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(d, "crc32c", H5T_STD_U32LE, aspace, H5P_DEFAULT, H5P_DEFAULT);
  const std::uint32_t zero = 0;
  H5Awrite(a, H5T_NATIVE_UINT32, &zero);
  H5Aclose(a);
  H5Sclose(aspace);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
}

Error import_error(const std::filesystem::path& path, const io::Hdf5ImportOptions& options) {
  try {
    io::import_hdf5(path, options);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "import of " << path << " succeeded";
  return Error(ErrorCode::Internal, "no error");
}

std::filesystem::path file_with_reference(const TempDir& dir) {
  const auto path = dir / "ref.h5";
  kv::KVCache cache = test::make_cache({2, 2, 24, 16});
  cache.info.token_ids.clear();
  cache.info.positions.clear();
  auto contents = test::contents_for(cache, "int8");
  contents.reference = cache;
  io::Hdf5ExportOptions options;
  options.include_reference = true;
  io::export_hdf5(path, contents, options);
  return path;
}

// Regression (issue #18): import allowed up to 2^40 reference values, read
// from a dataset that need not store any of them.
TEST(Hdf5Hostile, ASparseReferenceCacheIsRefusedBeforeAllocating) {
  TempDir dir("sparse-ref");
  const auto path = file_with_reference(dir);
  const hsize_t tokens = hsize_t(1) << 24;  // 2 x 2 x 2 x 2^24 x 16 = 2^31 values
  edit_file(path, [&](hid_t f) {
    set_int_attr(f, "/model", "tokens", std::int64_t(tokens));
    make_sparse(f, "/reference/cache", H5T_IEEE_F32LE, {2, 2, 2, tokens, 16});
  });
  // The reference must be float16: the float32 stand-in is refused as such.
  io::Hdf5ImportOptions options;
  options.load_reference = true;
  EXPECT_NE(std::string(import_error(path, options).what()).find("float16"), std::string::npos);

  edit_file(path, [&](hid_t f) {
    const hid_t half = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(half, 15, 10, 5, 0, 10);
    H5Tset_size(half, 2);
    H5Tset_ebias(half, 15);
    make_sparse(f, "/reference/cache", half, {2, 2, 2, tokens, 16});
    H5Tclose(half);
  });
  // Above the cap: refused naming both numbers.
  options.max_elements = std::size_t(1) << 30;
  Error e = import_error(path, options);
  EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
  EXPECT_NE(std::string(e.what()).find("2147483648"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("1073741824"), std::string::npos) << e.what();
  // Within the cap but not stored: refused from the dataset's storage.
  options.max_elements = std::size_t(1) << 40;
  e = import_error(path, options);
  EXPECT_EQ(e.code(), ErrorCode::Format) << e.what();
  EXPECT_NE(std::string(e.what()).find("declares 4294967296 bytes"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("stores only 0 bytes"), std::string::npos) << e.what();
  // Without the reference the file imports (nothing else is large).
  options.load_reference = false;
  EXPECT_NO_THROW(io::import_hdf5(path, options));
}

TEST(Hdf5Hostile, SparseTokenIdsAreRefused) {
  TempDir dir("sparse-ids");
  const auto path = file_with_reference(dir);
  edit_file(path, [&](hid_t f) {
    set_int_attr(f, "/model", "tokens", std::int64_t(1) << 24);
    make_sparse(f, "/context/token_ids", H5T_STD_I32LE, {hsize_t(1) << 24});
  });
  const Error e = import_error(path, {});
  EXPECT_EQ(e.code(), ErrorCode::Format) << e.what();
  EXPECT_NE(std::string(e.what()).find("/context/token_ids declares 67108864 bytes"), std::string::npos)
      << e.what();
}

TEST(Hdf5Hostile, MoreSectionRowsThanTheBitstreamCanHoldAreRefused) {
  TempDir dir("rows");
  const auto path = file_with_reference(dir);
  std::size_t bitstream_bytes = 0;
  {
    const auto c = io::import_hdf5(path);
    bitstream_bytes = c.levels[0].bitstream.size();
  }
  edit_file(path, [&](hid_t f) {
    const hid_t d = H5Dopen2(f, "/levels/0/sections", H5P_DEFAULT);
    const hid_t type = H5Dget_type(d);
    H5Dclose(d);
    make_sparse(f, "/levels/0/sections", type, {hsize_t(bitstream_bytes)});
    H5Tclose(type);
  });
  const Error e = import_error(path, {});
  EXPECT_EQ(e.code(), ErrorCode::Format) << e.what();
  EXPECT_NE(std::string(e.what()).find("/levels/0/sections has " + std::to_string(bitstream_bytes)),
            std::string::npos)
      << e.what();
}

}  // namespace

// The HDF5 fuzz target's recorded inputs (tests/io/data), replayed in
// hostile mode (whole-file checksum recomputed).
namespace test {
FuzzOutcome fuzz_hdf5_run(std::span<const std::uint8_t> data, bool hostile);
}  // namespace test

namespace {

// Regression (found by the `fuzz` label's libFuzzer run): HDF5 1.10 hangs
// reading a variable-length string attribute of this crafted file. Import
// parses in a child process first, so the hang becomes a Format error.
TEST(Hdf5Hostile, AFileThatHangsHdf5IsAFormatError) {
  const auto bytes = test::read_all(std::filesystem::path(KVSCOPE_SOURCE_DIR) /
                                    "tests/io/data/hdf5-hang-in-vlen-attribute.h5");
  ASSERT_GT(bytes.size(), 512u);
  const auto t0 = std::chrono::steady_clock::now();
  const auto out = test::fuzz_hdf5_run(bytes, true);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(out.accepted);
  EXPECT_EQ(out.error, ErrorCode::Format) << out.message;
  EXPECT_NE(out.message.find("HDF5"), std::string::npos) << out.message;
  EXPECT_LT(secs, 10.0);
}

// Regression: import forks a child to parse the file; a fork while another
// thread was inside HDF5 (holding its global lock) could leave the child
// waiting forever, and the import failed after the child's time limit. The
// GUI exports on one job thread while another imports, so both run here.
TEST(Hdf5Hostile, ImportWhileAnotherThreadExportsSucceeds) {
  TempDir dir("concurrent");
  const auto path = file_with_reference(dir);
  // A reference cache makes the exporter spend most of its time in H5Dwrite.
  kv::KVCache cache = test::make_cache({2, 4, 128, 128});
  cache.info.token_ids.clear();
  cache.info.positions.clear();
  auto contents = test::contents_for(cache, "int8");
  contents.reference = cache;
  std::atomic<bool> stop{false};
  std::atomic<int> exports{0};
  std::thread exporter([&] {
    io::Hdf5ExportOptions options;
    options.overwrite = true;
    options.include_reference = true;
    while (!stop.load()) {
      io::export_hdf5(dir / "other.h5", contents, options);
      exports.fetch_add(1);
    }
  });
  while (exports.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  io::Hdf5ImportOptions options;
  options.isolate_timeout_seconds = 5;
  std::string error;  // the first failure ends the loop (each costs the 5 s limit)
  for (int i = 0; i < 30 && error.empty(); ++i) {
    try {
      io::import_hdf5(path, options);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  stop = true;
  exporter.join();
  EXPECT_EQ(error, "");
}

}  // namespace
}  // namespace kvscope
