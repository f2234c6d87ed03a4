#!/usr/bin/python3
"""What TensorBoard logging costs brisk-train, side by side in one run.

Runs brisk-train on a synthetic task (784-1024-1024-10, batch 256, 2 threads by default)
alternately with every log on at its finest setting (--log-every 1: the five per-step
scalars every step; --histogram-every 1: weight and gradient histograms of every tensor,
activation statistics, the weight-tile and confusion-matrix images every epoch; plus epoch
scalars, text and hparams) and with --logdir none, --repeats times each. Checkpoints are off
in both (--checkpoint-dir none): they are not logging. Prints the medians of the training-loop throughput
(samples/s over the steps, as brisk-train reports per epoch) and of the whole run's wall
time (which also holds validation, whose forward pass also yields the activation statistics
and the confusion matrix when logging), their ratios, and the median of the costs of the
back-to-back pairs (each pair run one after the other, in alternating order, so that the
drift of a shared machine cancels). Last, the share of the process's CPU time that the
logging thread used (brisk-train reports the thread's CPU time; the process's comes from
wait4): unlike the timings, it does not depend on what else the machine is doing.

Usage: bench/logging_overhead.py [--brisk build/release/apps/brisk-train] [--repeats 3]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


def run(cmd):
    """Runs brisk-train; returns loop samples/s, wall time, kernel, and the share of the
    process's CPU time (all threads, from wait4) that the logging thread used."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit("logging_overhead.py: %s exited with %d" % (cmd[0], proc.returncode))
    lines = [json.loads(l) for l in out.strip().splitlines()]
    epochs = [l for l in lines if "epoch" in l]
    final = lines[-1]
    # Epoch 1 includes warm-up (page faults, first touches): use the later epochs.
    sps = statistics.median(e["samples_per_second"] for e in epochs[1:] or epochs)
    share = final.get("logging_cpu_seconds", 0.0) / (usage.ru_utime + usage.ru_stime)
    return sps, final["elapsed_seconds"], final.get("gemm_kernel", "?"), share


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brisk", default="build/release/apps/brisk-train")
    ap.add_argument("--model", default="784-1024-1024-10")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20000, help="synthetic training samples")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="brisk-logbench-")
    base = [a.brisk, "--data", "synthetic", "--model", a.model, "--batch", str(a.batch),
            "--threads", str(a.threads), "--epochs", str(a.epochs), "--synthetic-n",
            str(a.samples), "--synthetic-test-n", "1000", "--checkpoint-dir", "none", "--json"]
    results = {"off": [], "all": []}
    kernel = "?"
    try:
        for r in range(a.repeats):
            # Back-to-back pairs, in alternating order, so that the machine's drift cancels.
            for mode in (("off", "all") if r % 2 == 0 else ("all", "off")):
                extra = (["--logdir", "none"] if mode == "off" else
                         ["--logdir", os.path.join(tmp, "run%d" % r), "--log-every", "1",
                          "--histogram-every", "1"])
                sps, elapsed, kernel, share = run(base + extra)
                results[mode].append((sps, elapsed, share))
                print("  run %d, logging %-3s: %8.0f samples/s in the loop, %6.2f s in all"
                      % (r + 1, mode, sps, elapsed), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {m: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for m, v in results.items()}
    print("brisk-train %s, batch %d, %d threads, %d epochs of %d synthetic samples; matrix "
          "kernels %s; medians of %d runs each\n" % (a.model, a.batch, a.threads, a.epochs,
                                                    a.samples, kernel, a.repeats))
    print("| logging | samples/s (training loop) | wall time (whole run) |")
    print("|---|---|---|")
    print("| off (--logdir none) | %.0f | %.2f s |" % med["off"])
    print("| everything, every step | %.0f | %.2f s |" % med["all"])
    print("| cost, ratio of the medians | %+.1f%% | %+.1f%% |"
          % (100 * (med["off"][0] / med["all"][0] - 1), 100 * (med["all"][1] / med["off"][1] - 1)))
    loop = sorted(100 * (o[0] / x[0] - 1) for o, x in zip(results["off"], results["all"]))
    wall = sorted(100 * (x[1] / o[1] - 1) for o, x in zip(results["off"], results["all"]))
    print("| cost, median of the %d pairs (range) | %+.1f%% (%+.1f to %+.1f) | %+.1f%% (%+.1f to "
          "%+.1f) |" % (a.repeats, statistics.median(loop), loop[0], loop[-1],
                         statistics.median(wall), wall[0], wall[-1]))
    shares = [100 * x[2] for x in results["all"]]
    print("\nThe logging thread used %.2f%% of the process's CPU time (median; range %.2f to "
          "%.2f%%): on a machine whose cores the workers keep busy, the most logging can take "
          "from them." % (statistics.median(shares), min(shares), max(shares)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
