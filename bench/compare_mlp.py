#!/usr/bin/python3
"""Brisk vs PyTorch at its best: training throughput (MLP or CNN), side by side in one run.

Brisk runs bench_mlp at T = 1..N threads with one fixed micro-batch (brisk-train's default,
or --micro-batch), so its column is one model trained at different speeds. PyTorch runs
torch_mlp.py at every sensible setting of its thread pools (torch_settings.py: intra-op
threads x OpenBLAS threads, each 1..N, with and without OMP_WAIT_POLICY=PASSIVE): one process
per OpenBLAS thread count and wait policy (both are read when the libraries load), which runs
every intra-op count in turn. The runs alternate, --repeats times each; medians are compared.
Brisk's trained parameters are compared across T by checksum (they must be bitwise equal). For each T the table shows PyTorch's
best among the settings that use at most T threads in either pool, and the last column
compares with PyTorch's best on the whole machine; the setting that won is printed.

Usage: bench/compare_mlp.py [--brisk build/release/bench/bench_mlp] [--threads 1,2]
                            [--repeats 3] [--config MODEL:BATCH:STEPS ...] [--micro-batch M]
                            [--torch-openblas-threads 1]
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

# model, batch, timed steps per run (one to two seconds each on one core)
CONFIGS = [("784-256-128-10", 128, 300), ("784-1024-1024-10", 256, 40)]


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


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
    a = ap.parse_args()
    configs = ([(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2])) for c in a.config]
               if a.config else CONFIGS)
    threads = [int(t) for t in a.threads.split(",")]
    base_env = torch_settings.coretype_env(os.environ)
    settings = torch_settings.settings(a.torch_max_threads)
    if a.torch_openblas_threads:
        keep = {int(o) for o in a.torch_openblas_threads.split(",")}
        settings = [s for s in settings if s[1] in keep]

    for model, batch, steps in configs:
        brisk = {T: [] for T in threads}
        busy = {T: [] for T in threads}
        torch = {s: [] for s in settings}
        info = {}
        fnv = set()
        warm = str(max(3, steps // 10))
        for rep in range(a.repeats):
            for T in threads:
                cmd = [a.brisk, "--model", model, "--batch", str(batch), "--threads", str(T),
                       "--steps", str(steps), "--warmup", warm, "--json"]
                if a.micro_batch:
                    cmd += ["--micro-batch", str(a.micro_batch)]
                r = run_json(cmd, dict(os.environ))
                brisk[T].append(r["samples_per_second"])
                fnv.add(r["params_fnv"])
                # Work share of the least busy thread: every thread had work if it is high.
                work = [(b - w) / r["seconds"] for b, w in
                        zip(r["thread_busy_seconds"], r["thread_waiting_seconds"])]
                busy[T].append(min(work))
                info["brisk_kernel"], info["micro"] = r["kernel"], r["micro_batch"]
                info[T] = r["plan"]
            # One PyTorch process per (OpenBLAS threads, wait policy), both read at load
            # time; it runs every intra-op count in turn (torch.set_num_threads).
            for o, w in sorted({(s[1], s[2]) for s in settings}, key=str):
                counts = [s[0] for s in settings if s[1:] == (o, w)]
                out = subprocess.run(
                    [sys.executable, os.path.join(HERE, "torch_mlp.py"), "--model", model,
                     "--batch", str(batch), "--threads", ",".join(map(str, counts)),
                     "--steps", str(steps), "--warmup", warm],
                    env=torch_settings.setting_env(base_env, o, w), check=True,
                    capture_output=True, text=True).stdout
                for line in out.strip().splitlines():
                    r = json.loads(line)
                    torch[(r["threads"], o, w)].append(r["samples_per_second"])
                    info["torch_kernel"], info["torch"] = r["kernel"], r["torch"]
            print("  %s: round %d of %d done" % (model, rep + 1, a.repeats), file=sys.stderr)
        bmed = {T: statistics.median(v) for T, v in brisk.items()}
        tmed = {s: statistics.median(v) for s, v in torch.items()}
        best_all = max(tmed, key=tmed.get)
        print("\n%s, batch %d: medians of %d alternating runs of %d steps. Brisk: micro-batch "
              "%d, %s kernels. PyTorch %s: %s; its best on this machine: %s, "
              "%s samples/s.\n" % (model, batch, a.repeats, steps, info["micro"],
                                   info["brisk_kernel"], info["torch"], info["torch_kernel"],
                                   torch_settings.describe(best_all),
                                   format(round(tmed[best_all]), ",")))
        print("Brisk's trained parameters at every T: %s.\n"
              % ("bitwise identical (FNV-1a %s)" % next(iter(fnv)) if len(fnv) == 1
                 else "DIFFERENT (%s)" % ", ".join(sorted(fnv))))
        print("| threads | Brisk samples/s | vs its 1 thread | least busy thread working | "
              "how a batch is spread | PyTorch best with <= T threads | its setting | "
              "Brisk / that | Brisk / PyTorch's best |")
        print("|---|---|---|---|---|---|---|---|---|")
        b1 = bmed[threads[0]]
        for T in threads:
            fit = [s for s in settings if max(s[0], s[1]) <= T]
            bt = max(fit, key=tmed.get) if fit else None
            tv = tmed[bt] if bt else None
            print("| %d | %s | %.2fx | %.0f%% | %s | %s | %s | %s | %.2fx |"
                  % (T, format(round(bmed[T]), ","), bmed[T] / b1,
                     100 * statistics.median(busy[T]), info[T],
                     format(round(tv), ",") if tv else "-",
                     torch_settings.describe(bt) if bt else "-",
                     "%.2fx" % (bmed[T] / tv) if tv else "-", bmed[T] / tmed[best_all]))
        print("\nEvery PyTorch setting (median samples/s):")
        for s in sorted(settings, key=tmed.get, reverse=True):
            print("  %-50s %s" % (torch_settings.describe(s), format(round(tmed[s]), ",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
