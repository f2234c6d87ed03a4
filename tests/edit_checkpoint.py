#!/usr/bin/env python3
"""Edits a Brisk checkpoint's header the way a deliberate editor would, for the tests: sets
metadata values (meta:KEY=STRING) and settings in the brisk.config JSON (config:NAME=JSON),
rewrites the header (padded to a multiple of 8) and, unless --no-fix, recomputes the header
CRC-32C as brisk/checkpoint.h documents it, so that Brisk's own validation is what refuses it.

Usage: edit_checkpoint.py IN OUT [--no-fix] meta:brisk.epoch=7 config:log-every=0 ...
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_safetensors import crc32c  # noqa: E402

KEY = b'"brisk.header_crc32c":"'


def main():
    src, dst, edits = sys.argv[1], sys.argv[2], sys.argv[3:]
    fix = "--no-fix" not in edits
    edits = [e for e in edits if e != "--no-fix"]
    blob = open(src, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header["__metadata__"]
    config = json.loads(meta["brisk.config"])
    for e in edits:
        where, rest = e.split(":", 1)
        key, value = rest.split("=", 1)
        if where == "meta":
            meta[key] = value
        else:
            config[key] = json.loads(value)
    meta["brisk.config"] = json.dumps(config, separators=(",", ":"))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    size = struct.pack("<Q", len(text))
    if fix:
        at = text.index(KEY) + len(KEY)
        text = text[:at] + b"00000000" + text[at + 8:]
        crc = b"%08x" % crc32c(size + text)
        text = text[:at] + crc + text[at + 8:]
    with open(dst, "wb") as f:
        f.write(size + text + data)


if __name__ == "__main__":
    main()
