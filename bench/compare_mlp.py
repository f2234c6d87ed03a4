#!/usr/bin/python3
"""Brisk vs PyTorch MLP training throughput over thread counts, side by side in one run.

For each model, batch and thread count T, runs bench_mlp (Brisk, T worker threads) and
torch_mlp.py (PyTorch: torch.set_num_threads(T) and OPENBLAS_NUM_THREADS=T, since Debian's
PyTorch otherwise lets OpenBLAS use every core) alternately, --repeats times each, and prints
Markdown tables of the medians with the OpenBLAS kernel each ran. Both use the best OpenBLAS
kernel the CPU supports: Brisk picks it itself, PyTorch gets the same OPENBLAS_CORETYPE.

Usage: bench/compare_mlp.py [--brisk build/release/bench/bench_mlp] [--threads 1,2] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# model, batch, timed steps per run (about two seconds each on one core)
CONFIGS = [("784-256-128-10", 128, 300), ("784-1024-1024-10", 256, 40)]


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brisk", default="build/release/bench/bench_mlp",
                    help="bench_mlp binary (default %(default)s)")
    ap.add_argument("--threads", default=",".join(str(t) for t in range(1, os.cpu_count() + 1)),
                    help="comma-separated thread counts (default 1..CPUs)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side (default %(default)s)")
    ap.add_argument("--config", action="append", metavar="MODEL:BATCH:STEPS",
                    help="repeatable; default 784-256-128-10:128:300 and 784-1024-1024-10:256:40")
    a = ap.parse_args()
    configs = ([(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2])) for c in a.config]
               if a.config else CONFIGS)
    threads = [int(t) for t in a.threads.split(",")]

    for model, batch, steps in configs:
        rows = []
        for T in threads:
            brisk, torch = [], []
            for _ in range(a.repeats):
                r = run_json([a.brisk, "--model", model, "--batch", str(batch), "--threads", str(T),
                              "--steps", str(steps), "--warmup", str(max(3, steps // 10)), "--json"],
                             dict(os.environ))
                brisk.append(r["samples_per_second"])
                bk, mb = r["kernel"], r["micro_batch"]
                env = dict(os.environ)
                env.setdefault("OPENBLAS_CORETYPE", bk)
                env["OPENBLAS_NUM_THREADS"] = str(T)
                r = run_json([sys.executable, os.path.join(HERE, "torch_mlp.py"), "--model", model,
                              "--batch", str(batch), "--threads", str(T), "--steps", str(steps),
                              "--warmup", str(max(3, steps // 10))], env)
                torch.append(r["samples_per_second"])
                tk = r["kernel"]
            rows.append((T, mb, statistics.median(brisk), bk, statistics.median(torch), tk))
        b1 = rows[0][2]
        tbest = max(r[4] for r in rows)
        print(f"\n{model}, batch {batch} (medians of {a.repeats} alternating runs of {steps} steps)\n")
        print("| threads | micro-batch | Brisk samples/s | Brisk kernel | Brisk vs its 1 thread "
              "| PyTorch samples/s | PyTorch kernel | Brisk / PyTorch (same T) | Brisk / PyTorch best |")
        print("|---|---|---|---|---|---|---|---|---|")
        for T, mb, b, bk, t, tk in rows:
            print(f"| {T} | {mb} | {b:,.0f} | {bk} | {b / b1:.2f}x | {t:,.0f} | {tk} | {b / t:.2f}x "
                  f"| {b / tbest:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
