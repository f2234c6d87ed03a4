#!/usr/bin/env python3
"""Reads a Brisk checkpoint with numpy, using only the published safetensors layout:
8-byte little-endian header size, JSON header, raw little-endian tensors. Checks that the
tensors tile the data section exactly, that the shapes follow the model in the metadata
(PyTorch's Linear layout: weight (out, in), bias (out,)), that every value is finite, and
recomputes the CRC-32C the metadata records, with a table written here from the polynomial.
Prints one line per tensor; exits 1 on any problem.

Usage: check_safetensors.py FILE
"""
import json
import struct
import sys

import numpy as np


def crc32c(data, crc=0):
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def main():
    path = sys.argv[1]
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__")
    widths = [int(w) for w in meta["brisk.model"].split("-")]
    spans = []
    for name, t in header.items():
        assert t["dtype"] == "F32", (name, t["dtype"])
        begin, end = t["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype="<f4").reshape(t["shape"])
        assert np.all(np.isfinite(arr)), name
        base = name.split(".", 2)[-1] if name.startswith("optim.") else name
        layer = int(base.split(".")[0][len("dense"):])
        want = (widths[layer + 1], widths[layer]) if base.endswith("weight") else (widths[layer + 1],)
        assert arr.shape == want, (name, arr.shape, want)
        spans.append((begin, end))
        print("%s F32 %s mean %.6g" % (name, arr.shape, float(arr.mean())))
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data), "tensors do not cover the data"
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "gaps or overlaps"
    # Brisk's CRC runs over the tensors in its file order: parameters, then m, then v.
    order = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    crc = 0
    for _, t in order:
        b, e = t["data_offsets"]
        crc = crc32c(data[b:e], crc)
    assert "%08x" % crc == meta["brisk.data_crc32c"], ("crc", "%08x" % crc, meta["brisk.data_crc32c"])
    print("crc32c ok (%s); epoch %s, step %s" % (meta["brisk.data_crc32c"], meta["brisk.epoch"],
                                                meta["brisk.steps_done"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
