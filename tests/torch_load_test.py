#!/usr/bin/python3
"""A Brisk checkpoint loads into PyTorch: torch.nn.Sequential built from the model named in
its metadata (brisk_torch.build) takes its tensors with load_state_dict(strict=True) (the
optimizer moments aside), and gives the logits Brisk gives (ckpt_logits) on the same inputs
within 1e-4, in evaluation mode. A checkpoint trained with --precision bf16 (metadata
brisk.precision) is evaluated by Brisk in bf16; PyTorch then rounds the weights and inputs of
every Linear and Conv2d to bfloat16 (what Brisk's products multiply), in fp32 arithmetic, and
must agree as closely, but for the few samples where the order of the fp32 sums moved an
activation across a bfloat16 rounding boundary (at most 5 in 100, within 1e-2).

Usage: torch_load_test.py CHECKPOINT LOGITS_FILE
Exit 0 on agreement, 1 with the worst difference otherwise, 77 when torch is not installed.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    try:
        import numpy as np
        import torch
    except ImportError:
        print("skip: python3-torch is not installed")
        return 77
    import brisk_torch

    blob = open(sys.argv[1], "rb").read()
    (hn,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hn])
    data = blob[8 + hn:]
    meta = header.pop("__metadata__")
    shape = brisk_torch.input_of_meta(meta["brisk.input"])
    model, _ = brisk_torch.build(meta["brisk.model"], shape)
    state = {}
    for name, t in header.items():
        if name.startswith("optim."):
            continue
        b, e = t["data_offsets"]
        dt = {"F32": "<f4", "I64": "<i8"}[t["dtype"]]
        state[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=dt).reshape(t["shape"]).copy())
    model.load_state_dict(state, strict=True)
    model.eval()
    if meta.get("brisk.precision") == "bf16":
        def bf16(t):
            return t.to(torch.bfloat16).to(torch.float32)

        def round_input(module, args):
            return (bf16(args[0]),) + tuple(args[1:])

        rounded = 0
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                with torch.no_grad():
                    mod.weight.copy_(bf16(mod.weight))
                mod.register_forward_pre_hook(round_input)
                rounded += 1
        if len(shape) == 2 or rounded == 0:
            print("bf16: only image and vector models are checked here")
            return 1

    raw = open(sys.argv[2], "rb").read()
    n, d, c = struct.unpack("<3i", raw[:12])
    x = np.frombuffer(raw[12:12 + 4 * n * d], dtype="<f4").reshape((n,) + shape)
    want = np.frombuffer(raw[12 + 4 * n * d:], dtype="<f4").reshape(n, c)
    with torch.no_grad():
        got = model(torch.from_numpy(x.copy())).numpy()
    got = got.reshape(n, c)  # a language model's (n, T, V): every position in order
    worst = float(np.max(np.abs(got - want)))
    rel = worst / max(float(np.max(np.abs(want))), 1e-30)
    print("%s: %d tensors loaded into %s; %d samples, largest logit difference %.3g (%.3g of "
          "the largest logit)" % (os.path.basename(sys.argv[1]), len(state), meta["brisk.model"],
                                  n, worst, rel))
    if len(shape) == 2:  # a GPT: within 1e-5 relative
        return 0 if rel <= 1e-5 else 1
    if meta.get("brisk.precision") == "bf16":
        # A layer's input is the previous layer's output rounded to bfloat16. Where Brisk's
        # and PyTorch's fp32 sums differ in their last bit next to a rounding boundary, that
        # value rounds to neighbouring bfloat16 values (2^-8 apart), and the sample's logits
        # then differ by about 1e-3. So: nearly every sample within 1e-4, the rest within
        # 1e-2 of the largest logit. (Not rounding a layer's operands puts every sample out.)
        per = np.max(np.abs(got - want), axis=1)
        close = int(np.sum(per <= 1e-4))
        print("bf16: %d of %d samples within 1e-4" % (close, n))
        return 0 if close >= 0.95 * n and rel <= 1e-2 else 1
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
