#!/usr/bin/python3
"""Brisk across processes (mpirun, P processes x T threads) beside PyTorch
DistributedDataParallel (gloo, one thread per rank) on the same model and global batch.

For each P x T, runs `mpirun -np P bench_mlp --threads T` and torch_ddp.py with P x T ranks
(the same number of cores), alternately, --repeats times each, and prints a Markdown table of
the medians with the OpenBLAS kernel each side ran. Brisk's micro-batch is
min(64, ceil(B / (P T))). Both sides get the same OPENBLAS_CORETYPE.

Usage: bench/compare_mpi.py [--configs 1x2,2x1] [--repeats 3] [--model 784-1024-1024-10]
                            [--batch 256] [--steps 40]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brisk", default="build/release/bench/bench_mlp")
    ap.add_argument("--mpirun", default=shutil.which("mpirun") or "mpirun")
    ap.add_argument("--configs", default="1x2,2x1", help="P x T list (default %(default)s)")
    ap.add_argument("--model", default="784-1024-1024-10")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--coretype", default="SkylakeX", help="OPENBLAS_CORETYPE for both sides")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_CORETYPE=a.coretype)
    configs = [tuple(int(x) for x in c.split("x")) for c in a.configs.split(",")]
    rows = []
    for p, t in configs:
        micro = max(1, min(64, -(-a.batch // (p * t))))
        cmd = [a.brisk, "--model", a.model, "--batch", str(a.batch), "--threads", str(t),
               "--micro-batch", str(micro), "--steps", str(a.steps), "--warmup", "5", "--json"]
        if p > 1:
            cmd = [a.mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                   "-np", str(p)] + cmd
        brisk, torch = [], []
        for _ in range(a.repeats):
            b = run_json(cmd, env)
            brisk.append(b["samples_per_second"])
            bk = b["kernel"]
            if not a.no_torch and (p * t) > 1 and a.batch % (p * t) == 0:
                r = run_json([sys.executable, os.path.join(HERE, "torch_ddp.py"), "--procs",
                              str(p * t), "--model", a.model, "--batch", str(a.batch),
                              "--steps", str(a.steps)], env)
                torch.append(r["samples_per_second"])
                tk = r["kernel"]
        bm = statistics.median(brisk)
        tm = statistics.median(torch) if torch else None
        rows.append((p, t, micro, bm, bk, tm, tk if torch else "-"))
        print("  %dx%d: brisk %.0f, torch-ddp %s" % (p, t, bm, "%.0f" % tm if tm else "-"),
              file=sys.stderr)
    print("%s, global batch %d, medians of %d alternating runs of %d steps\n"
          % (a.model, a.batch, a.repeats, a.steps))
    print("| P x T | micro-batch | Brisk samples/s | Brisk kernel | PyTorch DDP ranks | DDP samples/s "
          "| DDP kernel | Brisk / DDP |")
    print("|---|---|---|---|---|---|---|---|")
    for p, t, micro, bm, bk, tm, tk in rows:
        print("| %dx%d | %d | %.0f | %s | %d | %s | %s | %s |"
              % (p, t, micro, bm, bk, p * t, "%.0f" % tm if tm else "-", tk,
                 "%.2fx" % (bm / tm) if tm else "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
