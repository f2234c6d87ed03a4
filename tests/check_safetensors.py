#!/usr/bin/env python3
"""Reads a Brisk checkpoint with numpy, using only the published safetensors layout:
8-byte little-endian header size, JSON header, raw little-endian tensors. Checks that the
tensors tile the data section exactly, that the shapes follow the model in the metadata
(the layer list: dense:N gives weight (N, in) and bias (N,), as torch.nn.Linear; conv:OUT:K
gives weight (OUT, in, K, K) as torch.nn.Conv2d), that every float is finite, and recomputes
the CRC-32C of the data section that the metadata records, with a table written here from
the polynomial. Prints one line per tensor; exits 1 on any problem.

Usage: check_safetensors.py FILE
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brisk_torch  # noqa: E402


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


def expected_shapes(spec, input_shape):
    """Weight and bias shapes of the dense and conv layers, by layer index (the grammar is
    brisk_torch.layers', which needs no torch)."""
    shapes = {}
    dims = brisk_torch.input_of_meta(input_shape)
    for i, kind, prm, shape_in, _ in brisk_torch.layers(spec, dims):
        if kind == "dense":  # on a sequence, per position: its features are the last size
            shapes[i] = ((prm["n"], shape_in[-1]), (prm["n"],))
        elif kind == "conv":
            shapes[i] = ((prm["out"], shape_in[0], prm["k"], prm["k"]), (prm["out"],))
    return shapes


def main():
    path = sys.argv[1]
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__")
    shapes = expected_shapes(meta["brisk.model"], meta["brisk.input"])
    spans = []
    for name, t in header.items():
        begin, end = t["data_offsets"]
        spans.append((begin, end))
        if t["dtype"] == "I64":
            assert name.endswith("num_batches_tracked") and t["shape"] == [], name
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        arr = np.frombuffer(data[begin:end], dtype="<f4").reshape(t["shape"])
        assert np.all(np.isfinite(arr)), name
        base = name.split(".", 2)[-1] if name.startswith("optim.") else name
        layer, what = base.split(".", 1)
        if int(layer) in shapes and what in ("weight", "bias"):
            want = shapes[int(layer)][0 if what == "weight" else 1]
            assert arr.shape == want, (name, arr.shape, want)
        print("%s F32 %s mean %.6g" % (name, arr.shape, float(arr.mean())))
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data), "tensors do not cover the data"
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "gaps or overlaps"
    crc = crc32c(data)
    assert "%08x" % crc == meta["brisk.data_crc32c"], ("crc", "%08x" % crc, meta["brisk.data_crc32c"])
    print("crc32c ok (%s); epoch %s, step %s" % (meta["brisk.data_crc32c"], meta["brisk.epoch"],
                                                meta["brisk.steps_done"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
