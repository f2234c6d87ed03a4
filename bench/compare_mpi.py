#!/usr/bin/python3
"""Brisk across processes (mpirun, P processes x T threads) beside PyTorch
DistributedDataParallel at its best on the same cores, model and global batch.

For each P x T, runs `mpirun -np P bench_mlp --threads T` (Brisk at one fixed micro-batch,
the batch over the largest P or --micro-batch, so every row trains the same model) and torch_ddp.py
at every sensible setting on P x T cores: one rank per process or one per core, each with
1..(cores / ranks) intra-op and OpenBLAS threads, with and without OMP_WAIT_POLICY=PASSIVE
(torch_settings.py). Runs alternate, --repeats times each; the table shows medians, PyTorch's
best and the setting that won.

Usage: bench/compare_mpi.py [--configs 1x2,2x1] [--repeats 3] [--model 784-1024-1024-10]
                            [--batch 256] [--steps 40] [--micro-batch M] [--no-torch]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_settings  # noqa: E402


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ddp_settings(p, t, batch):
    """(ranks, intra-op, OpenBLAS, wait) for DDP on p x t cores."""
    cores, out = p * t, []
    for ranks in sorted({p, cores}):
        if batch % ranks:
            continue
        for i, o, w in torch_settings.settings(cores // ranks):
            out.append((ranks, i, o, w))
    return out


def describe(s):
    return "%d rank%s x (%s)" % (s[0], "" if s[0] == 1 else "s", torch_settings.describe(s[1:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brisk", default="build/release/bench/bench_mlp")
    ap.add_argument("--mpirun", default=shutil.which("mpirun") or "mpirun")
    ap.add_argument("--configs", default="1x2,2x1", help="P x T list (default %(default)s)")
    ap.add_argument("--model", default="784-1024-1024-10")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micro-batch", type=int, default=0,
                    help="Brisk's micro-batch, the same in every row (default: the batch over "
                         "the largest P, so that every process has a shard)")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    py = None if a.no_torch else torch_settings.python_with_torch("compare_mpi")
    env = torch_settings.coretype_env(os.environ)
    configs = [tuple(int(x) for x in c.split("x")) for c in a.configs.split(",")]
    micro = a.micro_batch or max(1, a.batch // max(p for p, _ in configs))
    rows = []
    for p, t in configs:
        cmd = [a.brisk, "--model", a.model, "--batch", str(a.batch), "--threads", str(t),
               "--steps", str(a.steps), "--warmup", "5", "--micro-batch", str(micro), "--json"]
        if p > 1:
            cmd = [a.mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                   "-np", str(p)] + cmd
        settings = [] if a.no_torch else ddp_settings(p, t, a.batch)
        brisk, torch = [], {s: [] for s in settings}
        for _ in range(a.repeats):
            b = run_json(cmd, dict(os.environ))
            brisk.append(b["samples_per_second"])
            bk, micro, plan = b["kernel"], b["micro_batch"], b["plan"]
            for s in settings:
                r = run_json([py, os.path.join(HERE, "torch_ddp.py"), "--procs",
                              str(s[0]), "--threads", str(s[1]), "--openblas-threads", str(s[2]),
                              "--model", a.model, "--batch", str(a.batch), "--steps",
                              str(a.steps)], torch_settings.setting_env(env, s[2], s[3]))
                torch[s].append(r["samples_per_second"])
                tk = r["kernel"]
        bm = statistics.median(brisk)
        tmed = {s: statistics.median(v) for s, v in torch.items()}
        best = max(tmed, key=tmed.get) if tmed else None
        rows.append((p, t, micro, plan, bm, bk, best, tmed.get(best), tk if best else "-"))
        print("  %dx%d: brisk %.0f, torch best %s" % (p, t, bm, tmed.get(best)), file=sys.stderr)
    print("%s, global batch %d, medians of %d alternating runs of %d steps\n"
          % (a.model, a.batch, a.repeats, a.steps))
    print("| P x T | micro-batch | how a batch is spread | Brisk samples/s | Brisk kernels | "
          "PyTorch DDP best setting | DDP samples/s | DDP kernel | Brisk / DDP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p, t, micro, plan, bm, bk, best, tm, tk in rows:
        print("| %dx%d | %d | %s | %.0f | %s | %s | %s | %s | %s |"
              % (p, t, micro, plan, bm, bk, describe(best) if best else "-",
                 "%.0f" % tm if tm else "-", tk, "%.2fx" % (bm / tm) if tm else "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
