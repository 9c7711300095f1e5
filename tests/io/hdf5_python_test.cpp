// SPDX-License-Identifier: Apache-2.0
// The format stays readable outside KVScope: Debian's python3 with h5py
// reads an exported file, checks the structure docs/hdf5-format.md
// documents (names, types, shapes, checksums), and runs the doc's example.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "hdf5_test_util.h"

namespace kvscope {
namespace {

using test::TempDir;

constexpr const char* kPython = "/usr/bin/python3";

// Checks every documented name, type and checksum. Exit status 0 = all good.
constexpr const char* kChecker = R"PY(
import sys, h5py, numpy as np

def crc32c(data):
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

path = sys.argv[1]
raw = open(path, "rb").read()
block = raw[:512].split(b"\0")[0].decode()
lines = dict(l.split("=", 1) for l in block.splitlines()[1:] if "=" in l)
assert block.startswith("KVSCOPE-HDF5\n"), block
assert int(lines["file_bytes"]) == len(raw)
assert int(lines["crc32c"], 16) == crc32c(raw[512:])

def s(obj, name):
    v = obj.attrs[name]
    assert isinstance(v, str), (name, type(v))
    return v

def i(obj, name):
    v = obj.attrs[name]
    assert np.issubdtype(np.asarray(v).dtype, np.integer), (name, np.asarray(v).dtype)
    return int(v)

with h5py.File(path, "r") as f:
    assert s(f, "format") == "kvscope-encoded-cache"
    assert i(f, "format_version") == 1
    s(f, "kvscope_version")
    assert s(f, "created_utc").endswith("Z")
    m = f["model"]
    for k in ("name", "architecture", "sha256"): s(m, k)
    L, H, T, D = (i(m, k) for k in ("layers", "kv_heads", "tokens", "head_dim"))
    i(m, "rope_applied")
    assert np.asarray(m.attrs["rope_theta"]).dtype == np.float64
    ctx = f["context"]
    for k in ("token_ids", "positions"):
        ds = ctx[k]
        assert ds.dtype == np.int32 and ds.ndim == 1 and ds.shape[0] in (0, T), (k, ds.dtype, ds.shape)
        assert crc32c(ds[...].astype("<i4").tobytes()) == int(ds.attrs["crc32c"])
    if i(ctx, "has_text"):
        text = ctx["text"][()]
        text = text.decode() if isinstance(text, bytes) else text
        assert crc32c(text.encode()) == int(ctx["text"].attrs["crc32c"])
    n = i(f["levels"], "count")
    assert n >= 1 and sorted(f["levels"].keys(), key=int) == [str(k) for k in range(n)]
    for li in range(n):
        lv = f["levels"][str(li)]
        assert i(lv, "index") == li
        s(lv, "codec"); s(lv, "label")
        params = {k: lv["params"].attrs[k] for k in lv["params"].attrs}
        assert all(isinstance(v, str) for v in params.values()), params
        bs = lv["bitstream"]
        assert bs.dtype == np.uint8 and bs.ndim == 1
        stream = bs[...].tobytes()
        assert len(stream) == i(lv, "encoded_bytes")
        assert crc32c(stream) == int(bs.attrs["crc32c"])
        sec = lv["sections"]
        names = ["offset", "length", "crc32c", "chunk", "layer", "kv", "token_begin", "token_end", "kind"]
        assert list(sec.dtype.names) == names, sec.dtype.names
        assert sec.dtype.itemsize == 56
        rows = sec[...]
        assert crc32c(rows.tobytes()) == int(sec.attrs["crc32c"])
        pos = 0
        for r in rows:
            assert int(r["offset"]) == pos, (int(r["offset"]), pos)
            part = stream[pos:pos + int(r["length"])]
            assert crc32c(part) == int(r["crc32c"])
            assert r["kind"].decode() in ("header", "table", "chunk", "stream", "other"), r["kind"]
            pos += int(r["length"])
        assert pos == len(stream), "sections do not tile the bitstream"
    if "reference" in f:
        ref = f["reference/cache"]
        assert ref.dtype == np.float16 and ref.shape == (L, 2, H, T, D), (ref.dtype, ref.shape)
        assert ref.compression == "gzip" and ref.shuffle and ref.chunks is not None
        assert crc32c(ref[...].astype("<f2").tobytes()) == int(ref.attrs["crc32c"])
    if "calibration" in f:
        c = f["calibration"]
        s(c, "name"); s(c, "hash")
        assert crc32c(c["profile"][...].tobytes()) == int(c["profile"].attrs["crc32c"])
print("STRUCTURE OK")
)PY";

bool have_h5py() {
  return std::system((std::string(kPython) + " -c 'import h5py' >/dev/null 2>&1").c_str()) == 0;
}

/// Runs `script` with `arg`; returns exit status and fills `output`.
int run_python(const TempDir& dir, const std::string& script, const std::filesystem::path& arg,
               std::string& output) {
  const auto script_path = dir / "script.py";
  const auto out_path = dir / "out.txt";
  std::ofstream(script_path) << script;
  const std::string cmd = std::string(kPython) + " '" + script_path.string() + "' '" + arg.string() + "' >'" +
                          out_path.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(out_path);
  std::stringstream ss;
  ss << in.rdbuf();
  output = ss.str();
  return status;
}

/// The first ```python block of docs/hdf5-format.md.
std::string doc_example() {
  std::ifstream in(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "docs" / "hdf5-format.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const auto begin = doc.find("```python\n");
  if (begin == std::string::npos) return "";
  const auto start = begin + 10;
  const auto end = doc.find("```", start);
  return end == std::string::npos ? "" : doc.substr(start, end - start);
}

io::Hdf5Contents full_contents(const kv::KVCache& cache) {
  io::Hdf5Contents c;
  c.shape = cache.shape();
  c.info = cache.info;
  c.text = "Once upon a time";
  for (const codec::Codec* codec : codec::all_codecs()) {
    io::Hdf5Level level;
    level.config.codec = codec->name();
    level.bitstream = codec::encode(cache, level.config).bytes;
    c.levels.push_back(std::move(level));
  }
  c.calibration = io::Hdf5Calibration{"p", std::string(64, 'c'), {9, 8, 7}};
  c.reference = cache;
  return c;
}

TEST(Hdf5Python, H5pyReadsTheDocumentedStructure) {
  if (!have_h5py()) GTEST_SKIP() << kPython << " cannot import h5py (install python3-h5py)";
  TempDir dir("py");
  const kv::KVCache cache = test::make_cache();
  io::Hdf5ExportOptions options;
  options.include_text = true;
  options.include_reference = true;
  io::export_hdf5(dir / "full.h5", full_contents(cache), options);
  std::string output;
  EXPECT_EQ(run_python(dir, kChecker, dir / "full.h5", output), 0) << output;
  EXPECT_NE(output.find("STRUCTURE OK"), std::string::npos) << output;

  // The minimal file (no text, no reference, no calibration) too.
  io::export_hdf5(dir / "min.h5", test::contents_for(cache, codec::all_codecs().front()->name()));
  EXPECT_EQ(run_python(dir, kChecker, dir / "min.h5", output), 0) << output;
}

TEST(Hdf5Python, DocumentedExampleRuns) {
  if (!have_h5py()) GTEST_SKIP() << kPython << " cannot import h5py (install python3-h5py)";
  const std::string example = doc_example();
  ASSERT_FALSE(example.empty()) << "no ```python block in docs/hdf5-format.md";
  TempDir dir("pydoc");
  const kv::KVCache cache = test::make_cache();
  io::Hdf5ExportOptions options;
  options.include_reference = true;
  io::export_hdf5(dir / "doc.h5", full_contents(cache), options);
  std::string output;
  EXPECT_EQ(run_python(dir, example, dir / "doc.h5", output), 0) << output;
  EXPECT_NE(output.find("kvscope-encoded-cache"), std::string::npos) << output;
  EXPECT_NE(output.find("reference float16"), std::string::npos) << output;
}

}  // namespace
}  // namespace kvscope
