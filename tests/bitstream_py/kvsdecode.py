# SPDX-License-Identifier: Apache-2.0
"""An independent decoder of KVScope bitstreams, written only from
docs/bitstream.md (no KVScope code is imported or consulted). It exists to
prove that the document is complete: tests/bitstream_py/test_decoder.py
decodes every golden stream and freshly encoded streams of every codec and
mode with it and compares the values, one by one, with the C++ decoder.

Python 3 with numpy only; zstd frames go through the system's libzstd (a
general-purpose library, not KVScope's). Float operations follow the
document: every product or quotient is one IEEE binary32 operation
(numpy.float32 scalars and arrays), rounding is half to even.

    values, info = decode(stream_bytes, profile_dir=None)
    values: numpy float32 array [layers, 2, kv_heads, tokens, head_dim]
    info:   dict with the header fields (codec, params, shape, ...)
"""

import bisect
import ctypes
import ctypes.util
import os
import struct

import numpy as np

F32 = np.float32


class FormatError(Exception):
    """The stream breaks a rule of docs/bitstream.md."""


# ---------------------------------------------------------------- primitives

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """Castagnoli CRC (section "All integers ..."); chainable like zlib.crc32."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


class Reader:
    """Little-endian reads that fail (FormatError) instead of running past the end."""

    def __init__(self, data, what):
        self.data = data
        self.pos = 0
        self.what = what

    def need(self, n):
        if n > len(self.data) - self.pos:
            raise FormatError("%s: truncated (need %d bytes at %d)" % (self.what, n, self.pos))

    def take(self, n):
        self.need(n)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def i32(self):
        return struct.unpack("<i", self.take(4))[0]

    def f64(self):
        return struct.unpack("<d", self.take(8))[0]

    def str(self):
        return self.take(self.u16()).decode("utf-8")

    def varint(self):
        v = 0
        for i in range(10):
            b = self.u8()
            v |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return v
        raise FormatError(self.what + ": varint longer than 10 bytes")

    def remaining(self):
        return len(self.data) - self.pos

    def done(self):
        return self.pos == len(self.data)


def f16_array(raw):
    """IEEE binary16 little-endian bytes -> float32 array."""
    return np.frombuffer(bytes(raw), dtype="<f2").astype(F32)


def round_half_even(x):
    return F32(np.rint(F32(x)))


# -------------------------------------------------------------- range coder

def read_model(r, alphabet):
    """Section 2 "Model serialisation": None for the empty model, else the CDF list."""
    first = r.varint()
    m = r.varint()
    if m == 0:
        if first != 0:
            raise FormatError("empty model with an offset")
        return None
    if first + m > alphabet:
        raise FormatError("model exceeds its alphabet")
    freq = [0] * alphabet
    for i in range(m):
        freq[first + i] = r.varint()
    if sum(freq) != 65536:
        raise FormatError("model frequencies do not sum to 65536")
    cdf = [0]
    for f in freq:
        cdf.append(cdf[-1] + f)
    return cdf


class RangeDecoder:
    """Section 2 "Decoder": bytes past the end read as 0."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.code = 0
        self.range = 0xFFFFFFFF
        for _ in range(4):
            self.code = (self.code << 8) | self._next()

    def _next(self):
        if self.pos < len(self.data):
            b = self.data[self.pos]
            self.pos += 1
            return b
        self.pos += 1  # counts reads past the end too
        return 0

    def decode(self, cdf):
        r = self.range >> 16
        v = min(self.code // r, 65535)
        s = bisect.bisect_right(cdf, v) - 1  # cdf[s] <= v < cdf[s+1]
        self.code = (self.code - r * cdf[s]) & 0xFFFFFFFF
        self.range = (r * (cdf[s + 1] - cdf[s])) & 0xFFFFFFFF
        while self.range < (1 << 24):
            self.range = (self.range << 8) & 0xFFFFFFFF
            self.code = ((self.code << 8) | self._next()) & 0xFFFFFFFF
        return s

    def check_end(self, what):
        """Section 2 "End of a stream": the stream is exactly the encoder's output."""
        if self.pos < len(self.data):
            raise FormatError(what + ": trailing bytes after the last symbol")
        if len(self.data) and self.data[-1] == 0:
            raise FormatError(what + ": ends with a 0 byte")
        window = 0
        for i in range(self.pos - 4, self.pos):
            window = (window << 8) | (self.data[i] if i < len(self.data) else 0)
        low = (window - self.code) & 0xFFFFFFFF
        for k in (32, 24, 16, 8, 0):
            d = (2 ** k - low % 2 ** k) % 2 ** k
            if d <= self.range - 1:
                if d != self.code:
                    raise FormatError(what + ": does not end as the encoder ends it")
                return
        raise FormatError(what + ": does not end as the encoder ends it")


# ---------------------------------------------------------------- container

KIND_TABLE, KIND_CHUNK = 1, 2


def parse_container(data):
    """Section 1: header fields and the section list (CRCs verified)."""
    r = Reader(data, "bitstream")
    if r.take(4) != b"KVSC":
        raise FormatError("bad magic")
    version = r.u16()
    if version != 1:
        raise FormatError("unsupported format version %d" % version)
    flags = r.u16()
    if flags & ~1:
        raise FormatError("unknown flags")
    body_len = r.u32()
    body_crc = r.u32()
    body = r.take(body_len)
    if crc32c(body) != body_crc:
        raise FormatError("header checksum mismatch")
    h = Reader(body, "header")
    info = {"format_version": version}
    info["codec"] = h.str()
    info["codec_version"] = h.u16()
    params = {}
    for _ in range(h.u16()):
        k = h.str()
        if k in params:
            raise FormatError("duplicate parameter")
        params[k] = h.str()
    info["params"] = params
    layers, heads, tokens, dim = h.u32(), h.u32(), h.u32(), h.u32()
    if not (1 <= layers <= 4096 and heads >= 1 and 1 <= dim <= 65536 and heads * dim <= 1 << 20
            and tokens <= 1 << 24):
        raise FormatError("cache shape out of range")
    info["shape"] = (layers, heads, tokens, dim)
    info["model_name"] = h.str()
    info["architecture"] = h.str()
    info["model_sha256"] = h.str()
    rope = h.u8()
    if rope > 1:
        raise FormatError("bad rope flag")
    info["rope_applied"] = rope == 1
    info["rope_theta"] = h.f64()
    for key in ("token_ids", "positions"):
        n = h.u32()
        if n not in (0, tokens):
            raise FormatError(key + " count differs from the token count")
        info[key] = [h.i32() for _ in range(n)]
    info["codec_header"] = h.take(h.u32())
    count = h.u32()
    info["rope_inv_freq"] = []
    info["layer_window"] = []
    if flags & 1:  # extended cache info
        tables = h.u16()
        if tables > layers or (tables and dim % 2):
            raise FormatError("bad RoPE table count")
        freqs = []
        for _ in range(tables):
            t = list(struct.unpack("<%dd" % (dim // 2), h.take(8 * (dim // 2))))
            if not all(np.isfinite(t)):
                raise FormatError("non-finite RoPE frequency")
            freqs.append(t)
        if tables:
            index = [h.u16() for _ in range(layers)]
            if any(i >= tables for i in index):
                raise FormatError("RoPE table index out of range")
            info["rope_inv_freq"] = [freqs[i] for i in index]
        w = h.u8()
        if w > 1:
            raise FormatError("bad layer window flag")
        if w:
            info["layer_window"] = [h.u32() for _ in range(layers)]
            if any(x > 2 ** 31 - 1 for x in info["layer_window"]):
                raise FormatError("layer window out of range")
    if not h.done():
        raise FormatError("trailing bytes in the header body")
    sections = []
    for i in range(count):
        hdr = r.take(20)
        crc = r.u32()
        kind, kv, reserved, layer, begin, n, length = struct.unpack("<BBHIIII", hdr)
        payload = r.take(length)
        if crc32c(payload, crc32c(hdr)) != crc:
            raise FormatError("section %d checksum mismatch" % i)
        if kind not in (KIND_TABLE, KIND_CHUNK) or kv > 1 or reserved or layer >= layers:
            raise FormatError("section %d: bad kind, kv, reserved or layer" % i)
        if kind == KIND_CHUNK and (n == 0 or begin + n > tokens):
            raise FormatError("section %d: token range out of range" % i)
        if kind == KIND_TABLE and (begin or n):
            raise FormatError("section %d: table with a token range" % i)
        sections.append({"kind": kind, "kv": kv, "layer": layer, "begin": begin, "count": n,
                         "payload": payload})
    if not r.done():
        raise FormatError("trailing bytes after the last section")
    return info, sections


def check_order(info, sections, tables):
    """Section 1.3: per layer, per kind, [Table], then the chunks in order."""
    layers, _, tokens, _ = info["shape"]
    ct = int(info["params"].get("chunk_tokens", "0"))
    if not 1 <= ct <= 65536:
        raise FormatError("missing or invalid chunk_tokens")
    chunks = (tokens + ct - 1) // ct
    expected = []
    for l in range(layers):
        for k in range(2):
            if tables:
                expected.append((KIND_TABLE, k, l, 0, 0))
            for c in range(chunks):
                expected.append((KIND_CHUNK, k, l, c * ct, min(ct, tokens - c * ct)))
    got = [(s["kind"], s["kv"], s["layer"], s["begin"], s["count"]) for s in sections]
    if got != expected:
        raise FormatError("sections are not in the order of section 1.3")


# ------------------------------------------------------------------- codecs

def bins_per_layer(bins_text, splits_text, layers):
    """cachegen / cachegen-lmcache: layer l uses bins[g], g = splits <= l."""
    bins = [int(x) for x in bins_text.split(",") if x.strip()]
    splits = [int(x) for x in splits_text.split(",") if x.strip()]
    if len(splits) + 1 != len(bins) or any(not 4 <= b <= 256 for b in bins):
        raise FormatError("bins and layer splits do not fit")
    if any(s < 1 or s > layers - 1 for s in splits) or any(b <= a for a, b in zip(splits, splits[1:])):
        raise FormatError("layer splits out of range")
    return [bins[sum(1 for s in splits if s <= l)] for l in range(layers)]


def decode_fp16(info, chunk, out):
    _, heads, _, dim = info["shape"]
    n = chunk["count"]
    p = chunk["payload"]
    if len(p) != heads * n * dim * 2:
        raise FormatError("fp16 payload size")
    out[:, :n, :] = f16_array(p).reshape(heads, n, dim)


def decode_int(bits):
    M = 127 if bits == 8 else 7

    def run(info, chunk, out):
        _, heads, _, dim = info["shape"]
        n = chunk["count"]
        p = chunk["payload"]
        count = heads * n * dim
        sym_bytes = count if bits == 8 else (count + 1) // 2
        if len(p) != 2 * n + sym_bytes:
            raise FormatError("int%d payload size" % bits)
        step = f16_array(p[:2 * n])
        if not np.all(np.isfinite(step)) or np.any(step < 0):
            raise FormatError("invalid step")
        raw = np.frombuffer(bytes(p[2 * n:]), dtype=np.uint8)
        if bits == 8:
            q = raw.astype(np.int8).astype(np.int32)
        else:
            q = np.empty(2 * len(raw), dtype=np.int32)
            q[0::2] = raw & 0xF
            q[1::2] = raw >> 4
            q = q[:count] - 8
        if np.any(q < -M) or np.any(q > M):
            raise FormatError("symbol out of range")
        q = q.reshape(heads, n, dim).astype(F32)
        out[:, :n, :] = q * step[None, :, None]  # one float32 product each
    return run


def decode_kivi2(info, chunk, out):
    _, heads, tokens, dim = info["shape"]
    params = info["params"]
    G = int(params["group_size"])
    R = int(params["residual_tokens"])
    n, begin = chunk["count"], chunk["begin"]
    C = heads * dim
    key = chunk["kv"] == 0
    nq = min(max(tokens - R - begin, 0), n)
    groups = (nq + G - 1) // G if key else (C + G - 1) // G
    nparams = C * groups if key else nq * groups
    ncodes = C * nq
    nfp = C * (n - nq)
    p = chunk["payload"]
    if len(p) != nparams * 4 + (ncodes + 3) // 4 + nfp * 2:
        raise FormatError("kivi2 payload size")
    pairs = f16_array(p[:4 * nparams]).reshape(nparams, 2) if nparams else np.zeros((0, 2), F32)
    mn, st = pairs[:, 0], pairs[:, 1]
    if not (np.all(np.isfinite(mn)) and np.all(np.isfinite(st))) or np.any(st < 0):
        raise FormatError("invalid group parameters")
    codes_raw = np.frombuffer(bytes(p[4 * nparams:4 * nparams + (ncodes + 3) // 4]), dtype=np.uint8)
    codes = np.stack([(codes_raw >> (2 * j)) & 3 for j in range(4)], axis=1).reshape(-1)[:ncodes]
    codes = codes.reshape(heads, nq, dim)
    h_idx, t_idx, d_idx = np.meshgrid(np.arange(heads), np.arange(nq), np.arange(dim), indexing="ij")
    c_idx = h_idx * dim + d_idx
    pidx = c_idx * groups + t_idx // G if key else t_idx * groups + c_idx // G
    prod = codes.astype(F32) * st[pidx]  # product rounded to float32,
    out[:, :nq, :] = mn[pidx] + prod  # then the sum
    fp = f16_array(p[4 * nparams + (ncodes + 3) // 4:])
    out[:, nq:n, :] = fp.reshape(heads, n - nq, dim)


_zstd = None


def _zstd_lib():
    global _zstd
    if _zstd is None:
        name = ctypes.util.find_library("zstd") or "libzstd.so.1"
        lib = ctypes.CDLL(name)
        lib.ZSTD_decompress.restype = ctypes.c_size_t
        lib.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
        lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
        lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
        lib.ZSTD_getFrameContentSize.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.ZSTD_findFrameCompressedSize.restype = ctypes.c_size_t
        lib.ZSTD_findFrameCompressedSize.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _zstd = lib
    return _zstd


def decode_zstd(info, chunk, out):
    _, heads, _, dim = info["shape"]
    n = chunk["count"]
    p = bytes(chunk["payload"])
    if len(p) < 2 * n:
        raise FormatError("zstd payload too short")
    step = f16_array(p[:2 * n])
    if not np.all(np.isfinite(step)) or np.any(step < 0):
        raise FormatError("invalid step")
    frame = p[2 * n:]
    lib = _zstd_lib()
    count = heads * n * dim
    if lib.ZSTD_getFrameContentSize(frame, len(frame)) != count:
        raise FormatError("zstd frame content size is not the chunk's symbol count")
    if lib.ZSTD_findFrameCompressedSize(frame, len(frame)) != len(frame):
        raise FormatError("payload is not exactly one zstd frame")
    buf = ctypes.create_string_buffer(max(count, 1))
    got = lib.ZSTD_decompress(buf, count, frame, len(frame))
    if lib.ZSTD_isError(got) or got != count:
        raise FormatError("zstd frame does not decode")
    sym = np.frombuffer(buf.raw[:count], dtype=np.int8).astype(np.int32)
    if np.any(sym == -128):
        raise FormatError("symbol out of range")
    out[:, :n, :] = sym.reshape(heads, n, dim).astype(F32) * step[None, :, None]


def read_steps(r, count):
    step = f16_array(r.take(2 * count))
    if not np.all(np.isfinite(step)) or np.any(step < 0):
        raise FormatError("invalid step")
    return step


def read_streams(r, C):
    lengths = [r.varint() for _ in range(C)]
    if sum(lengths) != r.remaining():
        raise FormatError("stream lengths do not add up to the section size")
    return [r.take(n) for n in lengths]


class LmcacheDecoder:
    def __init__(self, info, sections):
        layers, heads, _, dim = info["shape"]
        p = info["params"]
        if info["codec_header"]:
            raise FormatError("cachegen-lmcache has no codec header")
        self.C = heads * dim
        self.bins = [bins_per_layer(p["key_bins"], p["key_layer_splits"], layers),
                     bins_per_layer(p["value_bins"], p["value_layer_splits"], layers)]
        self.models = {}
        for s in sections:
            if s["kind"] != KIND_TABLE:
                continue
            M = self.bins[s["kv"]][s["layer"]] // 2 - 1
            t = Reader(s["payload"], "table")
            self.models[(s["layer"], s["kv"])] = [read_model(t, 2 * M + 1) for _ in range(self.C)]
            if not t.done():
                raise FormatError("trailing bytes in a table")

    def __call__(self, info, chunk, out):
        _, heads, _, dim = info["shape"]
        n = chunk["count"]
        M = self.bins[chunk["kv"]][chunk["layer"]] // 2 - 1
        models = self.models[(chunk["layer"], chunk["kv"])]
        r = Reader(chunk["payload"], "cachegen-lmcache chunk")
        step = read_steps(r, n)
        streams = read_streams(r, self.C)
        for c in range(self.C):
            if models[c] is None:
                raise FormatError("chunk needs an empty model")
            rd = RangeDecoder(streams[c])
            h, d = divmod(c, dim)
            for t in range(n):
                out[h, t, d] = F32(rd.decode(models[c]) - M) * step[t]
            rd.check_end("channel %d" % c)


def fnv1a64(data):
    """Section 4: FNV-1a 64 with the document's offset basis (not FNV's standard one)."""
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def default_profile_dir():
    for var in ("KVSCOPE_CALIBRATION_DIR", "KVSCOPE_PROFILE_DIR"):
        if os.environ.get(var):
            return os.environ[var]
    if os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "kvscope", "profiles")
    return os.path.expanduser("~/.cache/kvscope/profiles")


SCALES = ["token", "head", "channel"]


def calibration_sections(data):
    """Section 4: a calibration file (*.kvsprof) -> {name: payload}; versions
    1 and 2 hold only cachegen's tables, read as that table version."""
    r = Reader(data, "calibration file")
    if r.take(4) != b"KVSP":
        raise FormatError("calibration file: bad magic")
    version = r.u16()
    if version not in (1, 2, 3) or r.u16() != 0:
        raise FormatError("calibration file: unsupported version or flags")
    length, crc = r.u32(), r.u32()
    body = r.take(length)
    if not r.done() or crc32c(body) != crc:
        raise FormatError("calibration file: bad length or checksum")
    if version < 3:
        return {"cachegen.tables": struct.pack("<H", version) + body}
    b = Reader(body, "calibration body")
    b.str()  # model name
    b.str()  # model sha256
    count = b.u16()
    if count > 256:
        raise FormatError("too many sections")
    sections, last = {}, None
    for _ in range(count):
        name = b.str()
        if not 1 <= len(name) <= 255 or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in name):
            raise FormatError("bad section name")
        if last is not None and name.encode() <= last.encode():
            raise FormatError("section names not strictly increasing")
        last = name
        n, c = b.u32(), b.u32()
        payload = b.take(n)
        if crc32c(payload) != c:
            raise FormatError("section %s checksum mismatch" % name)
        sections[name] = payload
    if not b.done():
        raise FormatError("trailing bytes in the calibration body")
    return sections


def parse_profile(data):
    """Section 4: the `cachegen.tables` section of a calibration file."""
    sections = calibration_sections(data)
    if "cachegen.tables" not in sections:
        raise FormatError("calibration file has no cachegen.tables section")
    b = Reader(sections["cachegen.tables"], "cachegen.tables")
    version = b.u16()
    if version not in (1, 2):
        raise FormatError("unsupported cachegen table version")
    layers, channels, group_size, chunk_tokens = b.u32(), b.u32(), b.u32(), b.u32()
    scale = SCALES[b.u8()] if version >= 2 else "channel"
    kbins = [b.u16() for _ in range(layers)]
    vbins = [b.u16() for _ in range(layers)]
    models = {}
    for l in range(layers):
        for k, bins in enumerate((kbins, vbins)):
            M = bins[l] // 2 - 1
            ms = []
            for _ in range(channels):
                mode = b.u8()
                if mode > 1:
                    raise FormatError("profile: bad channel mode")
                anchor = read_model(b, 2 * M + 1)
                delta = read_model(b, 4 * M + 1)
                ms.append((mode, anchor, delta))
            models[(l, k)] = ms
    if not b.done():
        raise FormatError("profile: trailing bytes")
    return {"layers": layers, "channels": channels, "group_size": group_size, "chunk_tokens": chunk_tokens,
            "scale": scale, "bins": [kbins, vbins], "models": models}


class CachegenDecoder:
    def __init__(self, info, sections, profile_dir=None):
        layers, heads, _, dim = info["shape"]
        p = info["params"]
        self.heads, self.dim, self.C = heads, dim, heads * dim
        self.G = int(p["group_size"])
        if info["codec_version"] == 1:
            if "scale" in p:
                raise FormatError("a version 1 cachegen stream with a scale parameter")
            self.scale = "channel"
        elif info["codec_version"] == 2:
            self.scale = p["scale"]
        else:
            raise FormatError("cachegen layout version %d" % info["codec_version"])
        self.bins = [bins_per_layer(p["key_bins"], p["key_layer_splits"], layers),
                     bins_per_layer(p["value_bins"], p["value_layer_splits"], layers)]
        h = Reader(info["codec_header"], "cachegen header")
        if h.u8() != 0:
            raise FormatError("unknown entropy coder")
        mode = h.u8()
        self.models = {}
        if mode == 1:
            digest = h.take(16).decode("ascii")
            path = os.path.join(profile_dir or default_profile_dir(), digest + ".kvsprof")
            with open(path, "rb") as f:
                data = f.read()
            if fnv1a64(data) != digest:
                raise FormatError("profile hash mismatch")
            prof = parse_profile(data)
            if (prof["layers"] != layers or prof["channels"] != self.C or prof["bins"] != self.bins
                    or prof["scale"] != self.scale):
                raise FormatError("profile does not match the stream")
            self.models = prof["models"]
        elif mode == 0:
            for s in sections:
                if s["kind"] != KIND_TABLE:
                    continue
                M = self.bins[s["kv"]][s["layer"]] // 2 - 1
                t = Reader(s["payload"], "cachegen table")
                ms = []
                for _ in range(self.C):
                    raw = t.u8()
                    if raw > 1:
                        raise FormatError("bad channel mode")
                    anchor = read_model(t, 2 * M + 1)
                    delta = read_model(t, 4 * M + 1)
                    if raw and delta is not None:
                        raise FormatError("raw channel with a delta model")
                    ms.append((raw, anchor, delta))
                if not t.done():
                    raise FormatError("trailing bytes in a table")
                self.models[(s["layer"], s["kv"])] = ms
        else:
            raise FormatError("unknown table mode")
        if not h.done():
            raise FormatError("trailing bytes in the cachegen header")
        self.tables = mode == 0

    def step_index(self, c, t):
        if self.scale == "token":
            return t
        if self.scale == "head":
            return t * self.heads + c // self.dim
        return c

    def __call__(self, info, chunk, out):
        n = chunk["count"]
        M = self.bins[chunk["kv"]][chunk["layer"]] // 2 - 1
        models = self.models[(chunk["layer"], chunk["kv"])]
        S = {"token": n, "head": n * self.heads, "channel": self.C}[self.scale]
        r = Reader(chunk["payload"], "cachegen chunk")
        step = read_steps(r, S)
        streams = read_streams(r, self.C)
        Mf = F32(M)
        for c in range(self.C):
            raw, am, dm = models[c]
            group = 1 if raw else self.G
            if am is None or (n > 1 and group > 1 and dm is None):
                raise FormatError("chunk needs an empty model")
            rd = RangeDecoder(streams[c])
            h, d = divmod(c, self.dim)
            q_a = 0
            s_a = F32(0)
            for t in range(n):
                st = step[self.step_index(c, t)]
                if t % group == 0:  # anchor
                    q = rd.decode(am) - M
                    q_a, s_a = q, st
                else:
                    if st > 0:
                        ratio = F32(1) if s_a == st else F32(s_a) / F32(st)
                    else:
                        ratio = F32(0)
                    pred = int(np.rint(min(max(F32(q_a) * ratio, -Mf), Mf)))
                    q = pred + rd.decode(dm) - 2 * M
                    if not -M <= q <= M:
                        raise FormatError("decoded value out of range")
                out[h, t, d] = F32(q) * st
            rd.check_end("channel %d" % c)


def decode(data, profile_dir=None):
    """Decodes a whole stream: (values [layers, 2, heads, tokens, dim] float32, info)."""
    data = bytes(data)
    info, sections = parse_container(data)
    codec = info["codec"]
    simple = {"fp16": decode_fp16, "int8": decode_int(8), "int4": decode_int(4), "kivi2": decode_kivi2,
              "zstd": decode_zstd}
    if codec in simple:
        if info["codec_version"] != 1 or info["codec_header"]:
            raise FormatError(codec + ": unexpected layout version or codec header")
        run, tables = simple[codec], False
    elif codec == "cachegen-lmcache":
        if info["codec_version"] != 1:
            raise FormatError("cachegen-lmcache layout version")
        run, tables = LmcacheDecoder(info, sections), True
    elif codec == "cachegen":
        run = CachegenDecoder(info, sections, profile_dir)
        tables = run.tables
    else:
        raise FormatError("unknown codec " + codec)
    check_order(info, sections, tables)
    layers, heads, tokens, dim = info["shape"]
    values = np.zeros((layers, 2, heads, tokens, dim), dtype=F32)
    for s in sections:
        if s["kind"] != KIND_CHUNK:
            continue
        view = values[s["layer"], s["kv"], :, s["begin"]:s["begin"] + s["count"], :]
        run(info, s, view)
    return values, info
