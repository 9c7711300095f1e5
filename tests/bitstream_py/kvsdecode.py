# SPDX-License-Identifier: Apache-2.0
"""An independent decoder of KVScope bitstreams, written only from
docs/bitstream.md (no KVScope code is imported or consulted). It exists to
prove that the document is complete: tests/bitstream_py/test_decoder.py
decodes every golden stream and freshly encoded streams of every codec and
mode with it and compares the values, one by one, with the C++ decoder.

Every codec: fp16, int8, int4, kivi2, zstd, cachegen-lmcache, cachegen
(layout versions 1-4: channel weighting, sinks, integer and float deltas, f16 and coded steps,
table_bits, per-layer bins, keys before RoPE, tables shipped or from a
calibration file) and transform (layout versions 1-3: shipped or
calibration bases, both groupings, keys before RoPE, query weighting,
value token gains). Every range-coded stream is checked to end
exactly as section 2 "End of a stream" says.

Python 3 with numpy only; zstd frames go through the system's libzstd (a
general-purpose library, not KVScope's). Float operations follow the
document: every product or quotient is one IEEE binary32 operation
(numpy.float32 scalars and arrays), rounding is half to even; RoPE's cos and
sin are math.cos/math.sin (the C library's binary64 functions).

    values, info = decode(stream_bytes, profile_dir=None)
    values: numpy float32 array [layers, 2, kv_heads, tokens, head_dim]
    info:   dict with the header fields (codec, params, shape, ...)
"""

import bisect
import ctypes
import ctypes.util
import math
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

def read_model(r, alphabet, total_bits=16):
    """Section 2 "Model serialisation": None for the empty model, else the CDF list.
    cachegen's shipped tables (version 3) sum to 2^table_bits: their
    frequencies are multiplied by 2^(16 - table_bits)."""
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
    if sum(freq) != 1 << total_bits:
        raise FormatError("model frequencies do not sum to 2^%d" % total_bits)
    cdf = [0]
    for f in freq:
        cdf.append(cdf[-1] + (f << (16 - total_bits)))
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
        self._renormalise()
        return s

    def _renormalise(self):
        while self.range < (1 << 24):
            self.range = (self.range << 8) & 0xFFFFFFFF
            self.code = ((self.code << 8) | self._next()) & 0xFFFFFFFF

    def decode_bits(self, k):
        """A uniform symbol of k bits (0 <= k <= 16): cum = v << (16 - k), freq = 1 << (16 - k)."""
        r = self.range >> 16
        w = min(self.code // r, 65535)
        v = w >> (16 - k)
        self.code = (self.code - r * (v << (16 - k))) & 0xFFFFFFFF
        self.range = (r << (16 - k)) & 0xFFFFFFFF
        self._renormalise()
        return v

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
    info["codec_header"] = h.take(h.u32())
    count = h.u32()
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
    if any(not 4 <= b <= 256 for b in bins):
        raise FormatError("bins out of range")
    if not splits and layers >= 2 and len(bins) == layers:  # per-layer form
        return bins
    if len(splits) + 1 != len(bins):
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
    """Section 4: the `cachegen.tables` section of a calibration file (table
    versions 1-3; every model codes any symbol of its alphabet)."""
    sections = calibration_sections(data)
    if "cachegen.tables" not in sections:
        raise FormatError("calibration file has no cachegen.tables section")
    b = Reader(sections["cachegen.tables"], "cachegen.tables")
    version = b.u16()
    if version not in (1, 2, 3, 4):
        raise FormatError("unsupported cachegen table version")
    layers, channels, group_size, chunk_tokens = b.u32(), b.u32(), b.u32(), b.u32()
    scale = "channel"
    if version >= 2:
        code = b.u8()
        if code > 2:
            raise FormatError("profile: bad scale")
        scale = SCALES[code]
    key_space = "post_rope"
    if version >= 3:
        code = b.u8()
        if code > 1:
            raise FormatError("profile: bad key space")
        key_space = ("post_rope", "pre_rope")[code]
    scales = {}
    if version >= 4:
        scales = read_channel_scales(b, layers, channels)
    kbins = [b.u16() for _ in range(layers)]
    vbins = [b.u16() for _ in range(layers)]
    if any(not 4 <= x <= 256 for x in kbins + vbins):
        raise FormatError("profile: bins out of range")
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
                if mode and delta is not None:
                    raise FormatError("profile: raw channel with a delta model")
                for m in (anchor, delta if not mode else anchor):
                    if m is None or any(m[i + 1] == m[i] for i in range(len(m) - 1)):
                        raise FormatError("profile: a model that cannot code every symbol")
                ms.append((mode, anchor, delta))
            models[(l, k)] = ms
    if not b.done():
        raise FormatError("profile: trailing bytes")
    return {"layers": layers, "channels": channels, "group_size": group_size, "chunk_tokens": chunk_tokens,
            "scale": scale, "key_space": key_space, "bins": [kbins, vbins], "models": models,
            "channel_scales": scales}


def read_channel_scales(r, layers, channels):
    """Channel weighting (cachegen layout version 4): u8 weighted kinds (bit 0
    keys, bit 1 values), then per layer and weighted kind the channels' f16
    scales, each finite and > 0. Returns {(layer, kind): float32 array}."""
    kinds = r.u8()
    if kinds not in (1, 2, 3):
        raise FormatError("bad weighted kinds")
    out = {}
    for l in range(layers):
        for k in (0, 1):
            if kinds >> k & 1:
                v = f16_array(r.take(2 * channels))
                if not np.all(np.isfinite(v)) or not np.all(v > 0):
                    raise FormatError("a channel scale is not finite and > 0")
                out[(l, k)] = v
    return out


# cachegen layout version 3 parameters and the values that mean version 2
# behaviour (docs/bitstream.md "cachegen", "Version 3").
CACHEGEN_V3 = {"sinks": "0", "delta_mode": "integer", "anchor_bins": "256", "step_coding": "fp16",
               "table_bits": "16", "key_space": "post_rope"}


def int_param(params, key, lo, hi):
    try:
        v = int(params[key])
    except (KeyError, ValueError):
        raise FormatError("missing or invalid parameter " + key)
    if not lo <= v <= hi:
        raise FormatError("parameter %s out of range" % key)
    return v


def choice_param(params, key, choices):
    v = params.get(key)
    if v not in choices:
        raise FormatError("missing or invalid parameter " + key)
    return v


def layer_rope_freqs(info, layer):
    """Section 1.1 "RoPE": the layer's table, else plain RoPE from rope_theta."""
    dim = info["shape"][3]
    if info["rope_inv_freq"]:
        return info["rope_inv_freq"][layer]
    theta = info["rope_theta"]
    if not (math.isfinite(theta) and theta > 0):
        raise FormatError("plain RoPE needs a finite rope_theta > 0")
    return [1.0 / math.pow(theta, (2.0 * i) / dim) for i in range(dim // 2)]


def apply_rope(keys, positions, freqs):
    """Section 1.1 "RoPE", apply: keys float32 [heads, tokens, dim], rotated in
    place; cos/sin of binary64 angles rounded once to float32, then float32
    products and sums (numpy float32 arrays: no fused multiply-add)."""
    if keys.shape[1] == 0:
        return
    half = keys.shape[2] // 2
    c = np.array([[math.cos(float(p) * f) for f in freqs] for p in positions], dtype=np.float64).astype(F32)
    s = np.array([[math.sin(float(p) * f) for f in freqs] for p in positions], dtype=np.float64).astype(F32)
    x0 = keys[:, :, :half].copy()
    x1 = keys[:, :, half:].copy()
    keys[:, :, :half] = x0 * c - x1 * s
    keys[:, :, half:] = x1 * c + x0 * s


def token_positions(info):
    tokens = info["shape"][2]
    return info["positions"] if info["positions"] else list(range(tokens))


# How many chunks used each coded-steps method (0 = plain f16, 1 = range
# coded): lets the tests check that their corpus exercises both.
CODED_STEP_METHODS = {}


def read_coded_steps(r, count):
    """cachegen "Coded steps" (step_coding=coded): f16 bit patterns -> float32."""
    if count == 0:
        return np.zeros(0, F32)
    if count == 1:
        method = 0
    else:
        method = r.u8()
    CODED_STEP_METHODS[method] = CODED_STEP_METHODS.get(method, 0) + 1
    if method == 0:
        h = [r.u16() for _ in range(count)]
    elif method == 1:
        h = [r.u16()]
        if h[0] >= 0x7C00:
            raise FormatError("invalid step")
        model = read_model(r, 17)
        if model is None:
            raise FormatError("empty step model")
        n = r.varint()
        if n > r.remaining():
            raise FormatError("coded steps exceed the section")
        rd = RangeDecoder(r.take(n))
        for _ in range(count - 1):
            b = rd.decode(model)
            z = 0 if b == 0 else 1
            left = b - 1
            while left > 0:
                m = min(left, 8)
                left -= m
                z = (z << m) | rd.decode_bits(m)
            d = z // 2 if z % 2 == 0 else -(z + 1) // 2
            h.append(h[-1] + d)
            if not 0 <= h[-1] < 0x7C00:
                raise FormatError("invalid coded step")
        rd.check_end("coded steps")
    else:
        raise FormatError("unknown step coding")
    if any(x >= 0x7C00 for x in h):
        raise FormatError("invalid step")
    return np.array(h, dtype="<u2").view("<f2").astype(F32)


class CachegenDecoder:
    def __init__(self, info, sections, profile_dir=None):
        layers, heads, _, dim = info["shape"]
        p = dict(info["params"])
        self.info = info
        self.heads, self.dim, self.C = heads, dim, heads * dim
        version = info["codec_version"]
        if version not in (1, 2, 3, 4, 5):
            raise FormatError("cachegen layout version %d" % version)
        # Version 4 streams say channel_weighting=calibrated, version 5 streams when
        # they are weighted; earlier ones have no such parameter.
        cw = p.get("channel_weighting")
        if cw not in (None, "calibrated") or (version == 4 and cw is None) or (version < 4 and cw is not None):
            raise FormatError("channel_weighting does not match layout version %d" % version)
        self.weighted = cw == "calibrated"
        # Version 5: centroid reconstruction, reconstruction > 0 (integer deltas only).
        if (version >= 5) != ("reconstruction" in p):
            raise FormatError("reconstruction does not match layout version %d" % version)
        self.alpha = F32(float(p["reconstruction"])) if version >= 5 else F32(0)
        if version >= 5 and not (0 < self.alpha <= 1):
            raise FormatError("reconstruction out of (0, 1]")
        for key, neutral in CACHEGEN_V3.items():
            if version < 3:
                if key in p:
                    raise FormatError("a version %d cachegen stream with parameter %s" % (version, key))
                p[key] = neutral
            elif key not in p:
                raise FormatError("a version 3 cachegen stream without parameter " + key)
        self.G = int_param(p, "group_size", 1, 1024)
        if version == 1:
            if "scale" in p:
                raise FormatError("a version 1 cachegen stream with a scale parameter")
            self.scale = "channel"
        else:
            self.scale = choice_param(p, "scale", SCALES)
        self.sinks = int_param(p, "sinks", 0, 65536)
        self.float = choice_param(p, "delta_mode", ("integer", "float")) == "float"
        self.anchor_bins = int_param(p, "anchor_bins", 4, 256)
        self.coded_steps = choice_param(p, "step_coding", ("fp16", "coded")) == "coded"
        self.table_bits = int_param(p, "table_bits", 10, 16)
        self.pre_rope = choice_param(p, "key_space", ("post_rope", "pre_rope")) == "pre_rope"
        if self.float and self.scale == "channel":
            raise FormatError("delta_mode=float with scale=channel")
        if self.float and self.alpha > 0:
            raise FormatError("reconstruction with delta_mode=float")
        if self.pre_rope and dim % 2:
            raise FormatError("key_space=pre_rope with an odd head_dim")
        self.bins = [bins_per_layer(p["key_bins"], p["key_layer_splits"], layers),
                     bins_per_layer(p["value_bins"], p["value_layer_splits"], layers)]
        h = Reader(info["codec_header"], "cachegen header")
        if h.u8() != 0:
            raise FormatError("unknown entropy coder")
        mode = h.u8()
        if mode not in (0, 1):
            raise FormatError("unknown table mode")
        digest = h.take(16).decode("ascii") if mode == 1 else None
        self.channel_scales = {}
        if self.weighted:
            if self.float or self.scale == "channel":
                raise FormatError("channel scales with float deltas or scale=channel")
            self.channel_scales = read_channel_scales(h, layers, self.C)
        if not h.done():
            raise FormatError("trailing bytes in the cachegen header")
        self.models = {}
        if mode == 1:
            path = os.path.join(profile_dir or default_profile_dir(), digest + ".kvsprof")
            with open(path, "rb") as f:
                data = f.read()
            if fnv1a64(data) != digest:
                raise FormatError("profile hash mismatch")
            prof = parse_profile(data)
            key_space = "pre_rope" if self.pre_rope else "post_rope"
            same_scales = prof["channel_scales"].keys() == self.channel_scales.keys() and all(
                np.array_equal(prof["channel_scales"][k], v) for k, v in self.channel_scales.items())
            if (prof["layers"] != layers or prof["channels"] != self.C or prof["bins"] != self.bins
                    or prof["scale"] != self.scale or prof["key_space"] != key_space or self.float
                    or not same_scales):
                raise FormatError("profile does not match the stream")
            self.models = prof["models"]
        elif mode == 0:
            for s in sections:
                if s["kind"] != KIND_TABLE:
                    continue
                t = Reader(s["payload"], "cachegen table")
                A, B = self.alphabets(s["layer"], s["kv"])
                ms = []
                for _ in range(self.C):
                    raw = t.u8()
                    if raw > 1 or (raw and self.float):
                        raise FormatError("bad channel mode")
                    anchor = read_model(t, A, self.table_bits)
                    delta = read_model(t, B, self.table_bits)
                    if raw and delta is not None:
                        raise FormatError("raw channel with a delta model")
                    ms.append((raw, anchor, delta))
                if not t.done():
                    raise FormatError("trailing bytes in a table")
                self.models[(s["layer"], s["kv"])] = ms
        self.tables = mode == 0
        self.rope = self.pre_rope and info["rope_applied"]
        if self.rope:
            self.freqs = [layer_rope_freqs(info, l) for l in range(layers)]
            self.positions = token_positions(info)

    def M(self, layer, kv):
        return self.bins[kv][layer] // 2 - 1

    def alphabets(self, layer, kv):
        """(anchor, delta) alphabet sizes of (layer, kind)."""
        M = self.M(layer, kv)
        if self.float:
            return 2 * (self.anchor_bins // 2 - 1) + 1, 2 * M + 1
        return 2 * M + 1, 4 * M + 1

    def step_index(self, c, t):
        if self.scale == "token":
            return t
        if self.scale == "head":
            return t * self.heads + c // self.dim
        return c

    def __call__(self, info, chunk, out):
        count, begin = chunk["count"], chunk["begin"]
        ns = min(max(self.sinks - begin, 0), count)
        n = count - ns
        M = self.M(chunk["layer"], chunk["kv"])
        models = self.models[(chunk["layer"], chunk["kv"])]
        S = {"token": n, "head": n * self.heads, "channel": self.C}[self.scale]
        r = Reader(chunk["payload"], "cachegen chunk")
        sinks = f16_array(r.take(2 * self.heads * ns * self.dim)).reshape(self.heads, ns, self.dim)
        if not np.all(np.isfinite(sinks)):
            raise FormatError("invalid sink value")
        out[:, :ns, :] = sinks
        step = read_coded_steps(r, S) if self.coded_steps else read_steps(r, S)
        streams = read_streams(r, self.C)
        quantized = out[:, ns:, :]
        for c in range(self.C):
            raw, am, dm = models[c]
            group = 1 if raw else self.G
            rd = RangeDecoder(streams[c])
            if n and (am is None or (n > 1 and group > 1 and dm is None)):
                raise FormatError("chunk needs an empty model")
            h, d = divmod(c, self.dim)
            if self.float:
                self.decode_float(rd, am, dm, M, step, c, n, quantized[h, :, d])
            else:
                self.decode_integer(rd, am, dm, M, group, step, c, n, quantized[h, :, d])
            rd.check_end("channel %d" % c)
        scales = self.channel_scales.get((chunk["layer"], chunk["kv"]))
        if scales is not None:  # the encoder divided by them; float32 products
            quantized *= scales.reshape(self.heads, 1, self.dim)
        if self.rope and chunk["kv"] == 0:
            apply_rope(quantized, self.positions[begin + ns:begin + count], self.freqs[chunk["layer"]])

    def levels(self, am, M):
        """What each Q in [-M, M] decodes to before the step: Q itself, or with centroid
        reconstruction (version 5) Q + alpha * (p(Q+1) - p(Q-1)) / (6 (p(Q-1) + 2 p(Q) + p(Q+1)))
        from the anchor model's frequencies, in float32."""
        if self.alpha == 0:
            return [F32(q) for q in range(-M, M + 1)]
        def p(k):
            s = k + M
            return am[s + 1] - am[s] if 0 <= s <= 2 * M and s + 1 < len(am) else 0
        out = []
        for q in range(-M, M + 1):
            den = 6 * (p(q - 1) + 2 * p(q) + p(q + 1))
            out.append(F32(q) if den == 0 else F32(q) + self.alpha * (F32(p(q + 1) - p(q - 1)) / F32(den)))
        return out

    def decode_integer(self, rd, am, dm, M, group, step, c, n, dst):
        """Integer deltas: Q_t = P_t + s - 2M, P_t from the anchor's Q_a."""
        level = self.levels(am, M) if n else None
        Mf = F32(M)
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
            dst[t] = level[q + M] * st

    def decode_float(self, rd, am, dm, M, step, c, n, dst):
        """Float deltas: anchors x' = Q*step on anchor_bins, others x'_a + Q*step."""
        Ma = self.anchor_bins // 2 - 1
        anchor = F32(0)
        for t in range(n):
            st = step[self.step_index(c, t)]
            if t % self.G == 0:
                anchor = F32(rd.decode(am) - Ma) * st
                dst[t] = anchor
            else:
                dst[t] = anchor + F32(rd.decode(dm) - M) * st


# ---------------------------------------------------------------- transform

def geometric_model(rho, K):
    """transform "Model G(rho, K)": the CDF of the two-sided geometric model."""
    p = rho << 16
    w = [(1 << 32) - p]
    for k in range(K):
        nxt = (p * p) >> 32
        mass = p if k == K - 1 else p - nxt
        w += [mass, mass]
        p = nxt
    n = 1 + 2 * K
    W = sum(w)
    f = [1 + (x * (65536 - n)) // W for x in w]
    f[f.index(max(f))] += 65536 - sum(f)
    cdf = [0]
    for x in f:
        cdf.append(cdf[-1] + x)
    return cdf


def parse_transform_basis(payload, grouping, shape):
    """Section 4 "transform.basis": the set of `grouping` as {(l, k): [(mean, vectors)] per group}."""
    layers, heads, _, dim = shape
    b = Reader(payload, "transform.basis")
    if b.u16() != 1:
        raise FormatError("unsupported transform.basis version")
    count = b.u8()
    if count not in (1, 2):
        raise FormatError("transform.basis: bad set count")
    found, seen = None, set()
    for _ in range(count):
        g = b.u8()
        if g > 1 or g in seen:
            raise FormatError("transform.basis: bad or repeated grouping")
        seen.add(g)
        L, H, D = b.u32(), b.u32(), b.u32()
        if not (1 <= L <= 4096 and H >= 1 and D >= 1 and H * D <= 4096):
            raise FormatError("transform.basis: shape out of range")
        b.take(8)  # calibration tokens
        G, n = (1, H * D) if g == 0 else (H, D)
        sets = {}
        for l in range(L):
            for k in range(2):
                groups = []
                for _ in range(G):
                    mean = np.frombuffer(b.take(4 * n), dtype="<f4").astype(F32)
                    var = np.frombuffer(b.take(4 * n), dtype="<f4").astype(F32)
                    vec = np.frombuffer(b.take(4 * n * n), dtype="<f4").astype(F32).reshape(n, n)
                    if (not np.all(np.isfinite(var)) or np.any(var < 0) or np.any(var[1:] > var[:-1])
                            or not np.all(np.isfinite(vec)) or np.any(np.abs(vec) > 1)):
                        raise FormatError("transform.basis: invalid variances or vectors")
                    groups.append((mean, vec))
                sets[(l, k)] = groups
        if ("layer", "head")[g] == grouping:
            found = (L, H, D, sets)
    if not b.done():
        raise FormatError("transform.basis: trailing bytes")
    if found is None:
        raise FormatError("calibration has no transform basis for grouping " + grouping)
    if found[:3] != (layers, heads, dim):
        raise FormatError("transform basis does not fit the stream's shape")
    return found[3]


class TransformDecoder:
    """docs/bitstream.md "transform": PCA coefficients, range coded with
    integer geometric models, reconstructed in float32 in a fixed order."""

    # Called, when set, with (bytes of the chunk's range-coded stream, the
    # chunk's quantized coefficients center + d in coding order): what
    # scripts/transform-deflate.py compares DEFLATE with.
    coefficient_hook = None

    def __init__(self, info, sections, profile_dir=None):
        layers, heads, tokens, dim = info["shape"]
        p = info["params"]
        if info["codec_version"] not in (1, 2, 3):
            raise FormatError("transform layout version %d" % info["codec_version"])
        # Layout version 2: a f16 step scale after every component's model;
        # version 3 also a f16 gain per coded token in value chunks.
        self.scaled = info["codec_version"] >= 2
        self.gained = info["codec_version"] >= 3
        self.info = info
        self.grouping = choice_param(p, "grouping", ("layer", "head"))
        self.sink = int_param(p, "sink_tokens", 0, 1 << 24)
        self.recent = int_param(p, "recent_tokens", 0, 1 << 24)
        self.G, self.n = (1, heads * dim) if self.grouping == "layer" else (heads, dim)
        ch = info["codec_header"]
        if len(ch) < 2 or ch[0] > 1 or ch[1] > 1 or len(ch) != (18 if ch[0] == 0 else 2):
            raise FormatError("transform: bad codec header")
        self.rope = ch[1] == 1
        if self.rope and (not info["rope_applied"] or dim % 2):
            raise FormatError("transform: keys before RoPE in a stream of a cache without RoPE")
        self.basis = {}
        self.tables = ch[0] == 1
        if not self.tables:
            digest = bytes(ch[2:]).decode("ascii", "replace")
            if any(c not in "0123456789abcdef" for c in digest):
                raise FormatError("transform: bad calibration hash")
            path = os.path.join(profile_dir or default_profile_dir(), digest + ".kvsprof")
            with open(path, "rb") as f:
                data = f.read()
            if fnv1a64(data) != digest:
                raise FormatError("calibration hash mismatch")
            sections_ = calibration_sections(data)
            if "transform.basis" not in sections_:
                raise FormatError("calibration file has no transform.basis section")
            self.basis = parse_transform_basis(sections_["transform.basis"], self.grouping, info["shape"])
            self.rows = {key: [self.n] * self.G for key in self.basis}
        else:
            self.rows = {}
            for s in sections:
                if s["kind"] != KIND_TABLE:
                    continue
                t = Reader(s["payload"], "transform table")
                groups, rows = [], []
                for _ in range(self.G):
                    r = t.varint()
                    if r > self.n:
                        raise FormatError("more basis vectors than channels")
                    mean = np.frombuffer(t.take(4 * self.n), dtype="<f4").astype(F32)
                    vec = f16_array(t.take(2 * r * self.n)).reshape(r, self.n)
                    if not np.all(np.isfinite(mean)) or not np.all(np.isfinite(vec)):
                        raise FormatError("non-finite basis entry")
                    groups.append((mean, vec))
                    rows.append(r)
                if not t.done():
                    raise FormatError("trailing bytes in a transform table")
                self.basis[(s["layer"], s["kv"])] = groups
                self.rows[(s["layer"], s["kv"])] = rows
        if self.rope:
            self.freqs = [layer_rope_freqs(info, l) for l in range(layers)]
            self.positions = token_positions(info)

    def exact(self, t):
        return t < self.sink or t >= self.info["shape"][2] - self.recent

    def __call__(self, info, chunk, out):
        _, heads, _, dim = info["shape"]
        key = (chunk["layer"], chunk["kv"])
        begin, count = chunk["begin"], chunk["count"]
        toks = range(begin, begin + count)
        exact = [t - begin for t in toks if self.exact(t)]
        coded = [t - begin for t in toks if not self.exact(t)]
        r = Reader(chunk["payload"], "transform chunk")
        vals = f16_array(r.take(2 * heads * len(exact) * dim)).reshape(heads, len(exact), dim)
        for i, t in enumerate(exact):
            out[:, t, :] = vals[:, i, :]
        groups = []
        for g in range(self.G):
            rows = self.rows[key][g]
            m = r.varint()
            if m > rows:
                raise FormatError("more coded components than the basis has")
            comps = []
            if m:
                step = F32(struct.unpack("<f", r.take(4))[0])
                if not (np.isfinite(step) and 0 < step <= 2.0 ** 32):
                    raise FormatError("invalid quantization step")
                j = -1
                for _ in range(m):
                    j += 1 + r.varint()
                    if j >= rows:
                        raise FormatError("component index out of range")
                    zc = r.varint()
                    if zc > 1 << 21:
                        raise FormatError("component center out of range")
                    center = zc >> 1 if zc % 2 == 0 else -(zc >> 1) - 1
                    K = r.u8()
                    if K > 16:
                        raise FormatError("too many magnitude classes")
                    rho = r.u16()
                    cstep = step
                    if self.scaled:
                        scale = f16_array(r.take(2))[0]
                        if not (np.isfinite(scale) and scale > 0):
                            raise FormatError("invalid component step scale")
                        cstep = F32(step * scale)
                        if not (np.isfinite(cstep) and cstep > 0):
                            raise FormatError("component step out of range")
                    comps.append((j, center, geometric_model(rho, K), cstep))
            groups.append(comps)
        gains = [None] * self.G
        if self.gained and chunk["kv"] == 1:
            for g, comps in enumerate(groups):
                if comps:
                    gains[g] = f16_array(r.take(2 * len(coded)))
                    if not (np.all(np.isfinite(gains[g])) and np.all(gains[g] > 0)):
                        raise FormatError("invalid token gain")
        coded_bytes = r.remaining()
        rd = RangeDecoder(r.take(coded_bytes))
        y = [np.zeros((len(coded), len(c)), F32) for c in groups]
        seen = [] if TransformDecoder.coefficient_hook else None
        for ti in range(len(coded)):
            for g, comps in enumerate(groups):
                for i, (_, center, cdf, cstep) in enumerate(comps):
                    s = rd.decode(cdf)
                    d = 0
                    if s:
                        k = (s - 1) >> 1
                        mag = (1 << k) + (rd.decode_bits(k) if k else 0)
                        d = mag if s & 1 else -mag
                    y[g][ti, i] = F32(center + d) * cstep
                    if gains[g] is not None:
                        y[g][ti, i] = y[g][ti, i] * gains[g][ti]  # float32 product, rounded after the step's
                    if seen is not None:
                        seen.append(center + d)
        rd.check_end("transform coefficients")
        if seen is not None:
            TransformDecoder.coefficient_hook(coded_bytes, seen)
        tok = np.zeros((heads, len(coded), dim), F32)
        for g, comps in enumerate(groups):
            mean, vec = self.basis[key][g]
            a = np.zeros((len(coded), self.n), F32)
            for i, (j, _, _, _) in enumerate(comps):
                a = a + vec[j][None, :] * y[g][:, i:i + 1]  # float32 product, then float32 sum
            x = a + mean[None, :]
            if self.grouping == "layer":
                tok[:, :, :] = x.reshape(len(coded), heads, dim).transpose(1, 0, 2)
            else:
                tok[g, :, :] = x
        if self.rope and chunk["kv"] == 0:
            apply_rope(tok, [self.positions[begin + t] for t in coded], self.freqs[chunk["layer"]])
        for i, t in enumerate(coded):
            out[:, t, :] = tok[:, i, :]


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
    elif codec == "transform":
        run = TransformDecoder(info, sections, profile_dir)
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
