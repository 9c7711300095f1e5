#!/usr/bin/python3
"""An independent decoder of `transform` bitstreams, written from docs/bitstream.md alone
(container 1.1-1.3, range coder 2, "transform" in 3): it must decode the committed golden
streams to the very values the C++ decoder gives (their FNV-1a hashes in
tests/codec/golden/expected.txt), so the document stays exact.

    /usr/bin/python3 tests/codec/transform_reference_decoder.py [tests/codec/golden]
"""
import math, struct, sys
import numpy as np

class R:
    def __init__(s, b, o=0): s.b, s.o = b, o
    def u8(s): v = s.b[s.o]; s.o += 1; return v
    def u16(s): v = struct.unpack_from('<H', s.b, s.o)[0]; s.o += 2; return v
    def u32(s): v = struct.unpack_from('<I', s.b, s.o)[0]; s.o += 4; return v
    def i32(s): v = struct.unpack_from('<i', s.b, s.o)[0]; s.o += 4; return v
    def f32(s): v = struct.unpack_from('<f', s.b, s.o)[0]; s.o += 4; return np.float32(v)
    def f64(s): v = struct.unpack_from('<d', s.b, s.o)[0]; s.o += 8; return v
    def f16(s): v = np.frombuffer(s.b, np.float16, 1, s.o)[0]; s.o += 2; return np.float32(v)
    def str(s): n = s.u16(); v = s.b[s.o:s.o+n].decode(); s.o += n; return v
    def varint(s):
        v, sh = 0, 0
        while True:
            x = s.u8(); v |= (x & 0x7f) << sh; sh += 7
            if not x & 0x80: return v
    def bytes(s, n): v = s.b[s.o:s.o+n]; s.o += n; return v

class RangeDecoder:
    def __init__(s, data):
        s.d, s.p = data, 0
        s.code = 0
        for _ in range(4): s.code = ((s.code << 8) | s.next()) & 0xffffffff
        s.range = 0xffffffff
    def next(s):
        if s.p < len(s.d): v = s.d[s.p]; s.p += 1; return v
        return 0
    def norm(s):
        while s.range < (1 << 24):
            s.range = (s.range << 8) & 0xffffffff
            s.code = ((s.code << 8) | s.next()) & 0xffffffff
    def decode(s, cdf):
        r = s.range >> 16
        v = min(s.code // r, 65535)
        sym = 0
        while not (cdf[sym] <= v < cdf[sym + 1]): sym += 1
        s.code = (s.code - r * cdf[sym]) & 0xffffffff
        s.range = (r * (cdf[sym + 1] - cdf[sym])) & 0xffffffff
        s.norm(); return sym
    def bits(s, k):
        r = s.range >> 16
        w = min(s.code // r, 65535)
        v = w >> (16 - k)
        s.code = (s.code - r * (v << (16 - k))) & 0xffffffff
        s.range = (r << (16 - k)) & 0xffffffff
        s.norm(); return v

def model(rho, K):
    p = rho << 16
    w = [(1 << 32) - p]
    for k in range(K):
        nxt = (p * p) >> 32
        mass = p if k == K - 1 else p - nxt
        w += [mass, mass]
        p = nxt
    n = 1 + 2 * K; W = sum(w)
    f = [1 + (x * (65536 - n)) // W for x in w]
    top = max(range(n), key=lambda i: (f[i], -i))
    f[top] += 65536 - sum(f)
    cdf = [0]
    for x in f: cdf.append(cdf[-1] + x)
    return cdf

def decode(path, cal_basis=None):
    b = open(path, 'rb').read()
    r = R(b)
    assert b[:4] == b'KVSC'; r.o = 4
    ver = r.u16(); flags = r.u16(); H = r.u32(); r.u32()
    h = R(b, 16)
    codec = h.str(); cver = h.u16(); P = h.u16()
    params = {}
    for _ in range(P): k = h.str(); params[k] = h.str()
    L, KVH, T, D = h.u32(), h.u32(), h.u32(), h.u32()
    h.str(); h.str(); h.str()
    rope_applied = h.u8(); theta = h.f64()
    nid = h.u32(); [h.i32() for _ in range(nid)]
    npos = h.u32(); pos = [h.i32() for _ in range(npos)]
    K = h.u32(); ch = h.bytes(K)
    nsec = h.u32()
    tables_f = None
    if flags & 1:
        Rn = h.u16(); tabs = [[h.f64() for _ in range(D // 2)] for _ in range(Rn)]
        idx = [h.u16() for _ in range(L)] if Rn else None
        tables_f = [tabs[i] for i in idx] if Rn else None
        if h.u8(): [h.u32() for _ in range(L)]
    assert h.o == 16 + H and codec == 'transform'
    src, rope = ch[0], ch[1]
    G = 1 if params['grouping'] == 'layer' else KVH
    n = KVH * D if G == 1 else D
    sink, recent, ct = int(params['sink_tokens']), int(params['recent_tokens']), int(params['chunk_tokens'])
    out = np.zeros((L, 2, KVH, T, D), np.float32)
    o = 16 + H
    basis = {}
    for _ in range(nsec):
        s = R(b, o)
        kind, kv, _, layer, tb, tc, N, crc = s.u8(), s.u8(), s.u16(), s.u32(), s.u32(), s.u32(), s.u32(), s.u32()
        pl = R(b[o + 24:o + 24 + N]); o += 24 + N
        if kind == 1:
            gs = []
            for g in range(G):
                rows = pl.varint(); mu = np.array([pl.f32() for _ in range(n)], np.float32)
                vec = np.frombuffer(pl.bytes(rows * n * 2), np.float16).astype(np.float32).reshape(rows, n)
                gs.append((mu, vec))
            basis[(layer, kv)] = gs; continue
        gs = basis.get((layer, kv)) or cal_basis[(layer, kv)]
        toks = list(range(tb, tb + tc))
        exact = [t for t in toks if t < sink or t >= T - recent]
        coded = [t for t in toks if not (t < sink or t >= T - recent)]
        for hh in range(KVH):
            for t in exact:
                for d in range(D): out[layer, kv, hh, t, d] = pl.f16()
        heads = []
        for g in range(G):
            m = pl.varint(); comps = []
            if m:
                step = pl.f32(); prev = -1
                for _ in range(m):
                    prev += 1 + pl.varint(); zc = pl.varint()
                    c = (zc >> 1) if zc % 2 == 0 else -(zc >> 1) - 1
                    Kc = pl.u8(); rho = pl.u16()
                    comps.append((prev, c, model(rho, Kc)))
            else: step = None
            heads.append((step, comps))
        rd = RangeDecoder(pl.b[pl.o:])
        ys = [np.zeros((len(coded), len(hc[1])), np.float32) for hc in heads]
        for ti in range(len(coded)):
            for g, (step, comps) in enumerate(heads):
                for i, (j, c, cdf) in enumerate(comps):
                    sym = rd.decode(cdf)
                    if sym == 0: dv = 0
                    else:
                        k = (sym - 1) >> 1
                        mag = (1 << k) + (rd.bits(k) if k > 0 else 0)
                        dv = mag if sym & 1 else -mag
                    ys[g][ti, i] = np.float32(np.float32(c + dv) * step)
        tok = np.zeros((KVH, len(coded), D), np.float32)
        for g, (step, comps) in enumerate(heads):
            mu, vec = gs[g]
            a = np.zeros((len(coded), n), np.float32)
            for i, (j, c, cdf) in enumerate(comps):
                a = (a + (vec[j][None, :] * ys[g][:, i:i + 1]).astype(np.float32)).astype(np.float32)
            x = (a + mu[None, :]).astype(np.float32)
            for c_ in range(n):
                hh = (c_ // D) if G == 1 else g
                tok[hh, :, c_ % D] = x[:, c_]
        if rope and kv == 0 and coded:
            half = D // 2
            f = tables_f[layer] if tables_f else [1.0 / theta ** (2 * i / D) for i in range(half)]
            for ti, t in enumerate(coded):
                p = pos[t] if npos else t
                for i in range(half):
                    ang = float(p) * f[i]
                    cc, ss = np.float32(math.cos(ang)), np.float32(math.sin(ang))
                    x0, x1 = tok[:, ti, i].copy(), tok[:, ti, i + half].copy()
                    tok[:, ti, i] = np.float32(x0 * cc) - np.float32(x1 * ss)
                    tok[:, ti, i + half] = np.float32(x1 * cc) + np.float32(x0 * ss)
        for ti, t in enumerate(coded): out[layer, kv, :, t, :] = tok[:, ti, :]
    return out

def fnv(arr):
    h = 1469598103934665603
    for byte in arr.astype('<f4').tobytes():
        h ^= byte; h = (h * 1099511628211) & 0xffffffffffffffff
    return '%016x' % h

def main():
    import os
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "golden")
    expected = {}
    for line in open(os.path.join(folder, "expected.txt")):
        if line.strip() and not line.startswith("#"):
            name, size, h = line.split()
            expected[name] = h
    names = sorted(n for n in expected if n.startswith("transform"))
    if not names:
        sys.exit("no transform golden streams listed in expected.txt")
    bad = 0
    for name in names:
        got = fnv(decode(os.path.join(folder, name)))
        print(f"{name}: {got} (expected {expected[name]})")
        bad += got != expected[name]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
