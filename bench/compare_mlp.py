#!/usr/bin/python3
"""Brisk vs PyTorch at its best: training throughput (MLP or CNN), side by side in one run.

Brisk runs bench_mlp at T = 1..N threads with one fixed micro-batch (brisk-train's default,
or --micro-batch), so its column is one model trained at different speeds. PyTorch runs
torch_mlp.py at every sensible setting of its thread pools (torch_settings.py: intra-op
threads x OpenBLAS threads, each 1..N, with and without OMP_WAIT_POLICY=PASSIVE): one process
per OpenBLAS thread count and wait policy (both are read when the libraries load), which runs
every intra-op count in turn. The runs alternate, --repeats times each; medians are compared.
A run during which other processes used a tenth of a core or more (/proc/stat against its
own CPU time, screening.py) is run again, at most 3 times; the count is printed.
Brisk's trained parameters are compared across T by checksum (they must be bitwise equal). For each T the table shows PyTorch's
best among the settings that use at most T threads in either pool, and the last column
compares with PyTorch's best on the whole machine; the setting that won is printed.

--precision fp32,bf16 runs each side in both precisions, alternating within every round:
Brisk with bench_mlp --precision bf16 (bfloat16 operands, fp32 sums), PyTorch with its
forward pass under torch.autocast("cpu", dtype=torch.bfloat16) (its best setting found
again); a table per precision, then bf16 against fp32 on each side. Brisk's runs of the two
precisions come one after the other in each round (which first alternates), and the last
line also gives each round's own bf16 / fp32 ratio: a host whose speed drifts between rounds
moves both runs of a round alike.

Usage: bench/compare_mlp.py [--brisk build/release/bench/bench_mlp] [--threads 1,2]
                            [--repeats 3] [--config MODEL:BATCH:STEPS ...] [--micro-batch M]
                            [--torch-openblas-threads 1] [--precision fp32,bf16]
MODEL is what bench_mlp and brisk-train take: widths, a layer list or a preset; the CNN:
  bench/compare_mlp.py --config cnn:128:30
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_settings  # noqa: E402
from screening import run_screened  # noqa: E402

# model, batch, timed steps per run (one to two seconds each on one core)
CONFIGS = [("784-256-128-10", 128, 300), ("784-1024-1024-10", 256, 40)]


SCREENED = [0]  # rounds run again because other processes used the CPU meanwhile


def run_quiet(cmd, env):
    """cmd's stdout from a run during which other processes used under a tenth of a core
    (screening.py), trying at most 3 times; the last try counts either way."""
    for _ in range(3):
        out, others = run_screened(cmd, env)
        if others < 0.1:
            break
        SCREENED[0] += 1
    return out


def run_json(cmd, env):
    return json.loads(run_quiet(cmd, env).strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brisk", default="build/release/bench/bench_mlp",
                    help="bench_mlp binary (default %(default)s)")
    ap.add_argument("--threads", default=",".join(str(t) for t in
                                                  torch_settings.thread_counts(os.cpu_count())),
                    help="comma-separated thread counts for Brisk (default: sensible 1..CPUs)")
    ap.add_argument("--torch-max-threads", type=int, default=os.cpu_count(),
                    help="largest thread count tried in PyTorch's pools (default: CPUs)")
    ap.add_argument("--torch-openblas-threads", default="",
                    help="comma-separated OpenBLAS thread counts tried for PyTorch (default: the "
                         "same counts as its intra-op pool; 1 is enough when its BLAS is not "
                         "OpenBLAS)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each (default %(default)s)")
    ap.add_argument("--micro-batch", type=int, default=0,
                    help="Brisk's micro-batch (default: brisk-train's default)")
    ap.add_argument("--config", action="append", metavar="MODEL:BATCH:STEPS",
                    help="repeatable; default 784-256-128-10:128:300 and 784-1024-1024-10:256:40")
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated: fp32, bf16 (default %(default)s)")
    a = ap.parse_args()
    precisions = a.precision.split(",")
    if any(p not in ("fp32", "bf16") for p in precisions):
        ap.error("--precision: fp32, bf16 or both")
    py = torch_settings.python_with_torch("compare_mlp")
    configs = ([(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2])) for c in a.config]
               if a.config else CONFIGS)
    threads = [int(t) for t in a.threads.split(",")]
    base_env = torch_settings.coretype_env(os.environ)
    settings = torch_settings.settings(a.torch_max_threads)
    if a.torch_openblas_threads:
        keep = {int(o) for o in a.torch_openblas_threads.split(",")}
        settings = [s for s in settings if s[1] in keep]

    for model, batch, steps in configs:
        brisk = {(p, T): [] for p in precisions for T in threads}
        busy = {(p, T): [] for p in precisions for T in threads}
        torch = {(p, s): [] for p in precisions for s in settings}
        info = {}
        fnv = {p: set() for p in precisions}
        warm = str(max(3, steps // 10))
        for rep in range(a.repeats):
            # Brisk's runs of both precisions next to each other (their order alternating
            # from round to round), so that each round's bf16 / fp32 compares runs a few
            # seconds apart; then PyTorch's.
            for prec in (precisions if rep % 2 == 0 else precisions[::-1]):
                for T in threads:
                    cmd = [a.brisk, "--model", model, "--batch", str(batch), "--threads", str(T),
                           "--steps", str(steps), "--warmup", warm, "--precision", prec,
                           "--json"]
                    if a.micro_batch:
                        cmd += ["--micro-batch", str(a.micro_batch)]
                    r = run_json(cmd, dict(os.environ))
                    brisk[(prec, T)].append(r["samples_per_second"])
                    fnv[prec].add(r["params_fnv"])
                    # Work share of the least busy thread: every thread had work if it is high.
                    work = [(b - w) / r["seconds"] for b, w in
                            zip(r["thread_busy_seconds"], r["thread_waiting_seconds"])]
                    busy[(prec, T)].append(min(work))
                    info["brisk_kernel"], info["micro"] = r["kernel"], r["micro_batch"]
                    info[T] = r["plan"]
            for prec in precisions:
                # One PyTorch process per (OpenBLAS threads, wait policy), both read at load
                # time; it runs every intra-op count in turn (torch.set_num_threads).
                for o, w in sorted({(s[1], s[2]) for s in settings}, key=str):
                    counts = [s[0] for s in settings if s[1:] == (o, w)]
                    out = run_quiet(
                        [py, os.path.join(HERE, "torch_mlp.py"), "--model", model,
                         "--batch", str(batch), "--threads", ",".join(map(str, counts)),
                         "--steps", str(steps), "--warmup", warm, "--precision", prec],
                        torch_settings.setting_env(base_env, o, w))
                    for line in out.strip().splitlines():
                        r = json.loads(line)
                        torch[(prec, (r["threads"], o, w))].append(r["samples_per_second"])
                        info["torch_kernel"], info["torch"] = r["kernel"], r["torch"]
            print("  %s: round %d of %d done" % (model, rep + 1, a.repeats), file=sys.stderr)
        bmed = {k: statistics.median(v) for k, v in brisk.items()}
        tmed = {k: statistics.median(v) for k, v in torch.items()}
        best = {}
        for prec in precisions:
            best_all = max(settings, key=lambda s: tmed[(prec, s)])
            best[prec] = best_all
            label = "" if precisions == ["fp32"] else " [%s%s]" % (
                prec, ": PyTorch under autocast(bfloat16)" if prec == "bf16" else "")
            print("\n%s, batch %d%s: medians of %d alternating runs of %d steps. Brisk: "
                  "micro-batch %d, %s kernels. PyTorch %s: %s; its best on this machine: %s, "
                  "%s samples/s.\n" % (model, batch, label, a.repeats, steps, info["micro"],
                                       info["brisk_kernel"], info["torch"], info["torch_kernel"],
                                       torch_settings.describe(best_all),
                                       format(round(tmed[(prec, best_all)]), ",")))
            print("Runs repeated because other processes used the CPU: %d so far.\n"
                  % SCREENED[0])
            print("Brisk's trained parameters at every T: %s.\n"
                  % ("bitwise identical (FNV-1a %s)" % next(iter(fnv[prec]))
                     if len(fnv[prec]) == 1 else "DIFFERENT (%s)" % ", ".join(sorted(fnv[prec]))))
            print("| threads | Brisk samples/s | vs its 1 thread | least busy thread working | "
                  "how a batch is spread | PyTorch best with <= T threads | its setting | "
                  "Brisk / that | Brisk / PyTorch's best |")
            print("|---|---|---|---|---|---|---|---|---|")
            b1 = bmed[(prec, threads[0])]
            for T in threads:
                fit = [s for s in settings if max(s[0], s[1]) <= T]
                bt = max(fit, key=lambda s: tmed[(prec, s)]) if fit else None
                tv = tmed[(prec, bt)] if bt else None
                print("| %d | %s | %.2fx | %.0f%% | %s | %s | %s | %s | %.2fx |"
                      % (T, format(round(bmed[(prec, T)]), ","), bmed[(prec, T)] / b1,
                         100 * statistics.median(busy[(prec, T)]), info[T],
                         format(round(tv), ",") if tv else "-",
                         torch_settings.describe(bt) if bt else "-",
                         "%.2fx" % (bmed[(prec, T)] / tv) if tv else "-",
                         bmed[(prec, T)] / tmed[(prec, best_all)]))
            print("\nEvery PyTorch setting (median samples/s):")
            for s in sorted(settings, key=lambda s: tmed[(prec, s)], reverse=True):
                print("  %-50s %s" % (torch_settings.describe(s), format(round(tmed[(prec, s)]), ",")))
        if len(precisions) == 2:
            T = threads[-1]
            bb = bmed[("bf16", T)] / bmed[("fp32", T)]
            tb = tmed[("bf16", best["bf16"])] / tmed[("fp32", best["fp32"])]
            # Each round's own ratio (its two runs seconds apart): steadier than the ratio of
            # the medians when the machine's speed drifts between rounds.
            paired = sorted(b / f for b, f in zip(brisk[("bf16", T)], brisk[("fp32", T)]))
            print("\nbf16 against fp32, %s, batch %d: Brisk at %d threads %.2fx (each round's "
                  "own ratio: median %.2fx, %s); PyTorch's best %.2fx; Brisk bf16 / PyTorch's "
                  "best bf16 %.2fx.\n"
                  % (model, batch, T, bb, statistics.median(paired),
                     ", ".join("%.2fx" % x for x in paired), tb,
                     bmed[("bf16", T)] / tmed[("bf16", best["bf16"])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
