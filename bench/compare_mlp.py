#!/usr/bin/python3
"""Brisk vs PyTorch MLP training throughput, side by side in one run.

For each model and batch size, runs bench_mlp (Brisk, one worker) and torch_mlp.py (PyTorch,
torch.set_num_threads(1) and OPENBLAS_NUM_THREADS=1) alternately, --repeats times each, and
prints a Markdown table of the medians with the OpenBLAS kernel each one ran. Both use the
best OpenBLAS kernel the CPU supports: Brisk picks it itself, and PyTorch gets the same
OPENBLAS_CORETYPE in its environment (unless you set one yourself).

Usage: bench/compare_mlp.py [--brisk build/bench/bench_mlp] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = [("784-256-128-10", 128)]


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brisk", default="build/bench/bench_mlp", help="bench_mlp binary (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side (default %(default)s)")
    ap.add_argument("--steps", type=int, default=300, help="timed steps per run (default %(default)s)")
    ap.add_argument("--config", action="append", metavar="MODEL:BATCH",
                    help="model and batch (repeatable; default 784-256-128-10:128)")
    a = ap.parse_args()
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.config] if a.config else CONFIGS

    env = dict(os.environ)
    rows = []
    for model, batch in configs:
        brisk, torch = [], []
        bk = tk = None
        for _ in range(a.repeats):
            r = run_json([a.brisk, "--model", model, "--batch", str(batch), "--steps", str(a.steps), "--json"], env)
            brisk.append(r["samples_per_second"])
            bk = r["kernel"]
            tenv = dict(env)
            tenv.setdefault("OPENBLAS_CORETYPE", bk)
            tenv["OPENBLAS_NUM_THREADS"] = "1"
            r = run_json([sys.executable, os.path.join(HERE, "torch_mlp.py"), "--model", model,
                          "--batch", str(batch), "--threads", "1", "--steps", str(a.steps)], tenv)
            torch.append(r["samples_per_second"])
            tk = r["kernel"]
        b, t = statistics.median(brisk), statistics.median(torch)
        rows.append((model, batch, b, bk, t, tk, b / t))

    print("| model | batch | Brisk samples/s (1 worker) | kernel | PyTorch samples/s (1 thread) | kernel | Brisk / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for model, batch, b, bk, t, tk, ratio in rows:
        print(f"| {model} | {batch} | {b:,.0f} | {bk} | {t:,.0f} | {tk} | {ratio:.2f}x |")
    print(f"\nmedians of {a.repeats} alternating runs of {a.steps} steps each; Adam, ReLU, softmax "
          f"cross-entropy, synthetic uint8 data normalised per batch")


if __name__ == "__main__":
    sys.exit(main())
