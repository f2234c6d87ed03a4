#!/usr/bin/python3
"""What image augmentation costs a training step, side by side in one run.

Runs bench_mlp on the CNN preset with and without --augment, alternating, --repeats rounds
each, and prints the median samples/s of each and their ratio. A round during which other
processes used more than a tenth of a core (/proc/stat against the round's own CPU time) is
screened out and run again (at most 3 times). The two must differ only by the augmentation:
the trained weights' checksums must differ (the augmentation ran) and each side's must be the
same in every round (deterministic).

Usage: bench/compare_augment.py [--bench build/release/bench/bench_mlp] [--model cnn]
                                [--batch 128] [--threads 2] [--steps 40] [--repeats 5]
                                [--augment crop:4,flip,erase:0.25]
"""
import argparse
import json
import os
import statistics
import sys

from screening import run_screened


def timed(cmd):
    """Runs cmd (bench_mlp --json); returns (its JSON, the cores others used meanwhile)."""
    out, others = run_screened(cmd)
    return json.loads(out), others


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="build/release/bench/bench_mlp")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--augment", default="crop:4,flip,erase:0.25")
    a = ap.parse_args()
    if not os.access(a.bench, os.X_OK):
        sys.exit("compare_augment: %s is not built (cmake --build build/release)" % a.bench)
    base = [a.bench, "--model", a.model, "--batch", str(a.batch), "--threads", str(a.threads),
            "--steps", str(a.steps), "--warmup", "5", "--json"]
    sides = {"none": base, a.augment: base + ["--augment", a.augment]}
    sps = {k: [] for k in sides}
    fnv = {k: set() for k in sides}
    screened = 0
    for r in range(a.repeats):
        for name, cmd in sides.items():
            for _ in range(3):
                j, others = timed(cmd)
                if others < 0.1:
                    break
                screened += 1
            sps[name].append(j["samples_per_second"])
            fnv[name].add(j["params_fnv"])
            print("round %d, augment %s: %.0f samples/s (others used %.2f cores)"
                  % (r + 1, name, j["samples_per_second"], others), flush=True)
    for name in sides:
        if len(fnv[name]) != 1:
            sys.exit("compare_augment: augment %s trained different weights in different rounds"
                     % name)
    if fnv["none"] == fnv[a.augment]:
        sys.exit("compare_augment: the augmented run trained the same weights: it did not run")
    m0, m1 = statistics.median(sps["none"]), statistics.median(sps[a.augment])
    print("\n%s, batch %d, %d threads, %s kernels (%s): medians of %d alternating rounds, %d "
          "screened out and rerun" % (a.model, a.batch, a.threads, j["kernel"], j["plan"],
                                      a.repeats, screened))
    print("| augment | samples/s | step time |")
    print("|---|---|---|")
    print("| none | %.0f | 1.000 |" % m0)
    print("| %s | %.0f | %.3f |" % (a.augment, m1, m0 / m1))
    print("the augmentation adds %.1f%% to the step time" % (100 * (m0 / m1 - 1)))


if __name__ == "__main__":
    main()
