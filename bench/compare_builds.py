#!/usr/bin/env python3
"""Two builds of bench_mlp side by side, in each precision: alternating rounds, each round
running every (build, precision) pair back to back (their order reversed every other
round), so that the host's drift between rounds cancels out of each round's own ratios.

Prints, per build, the median samples/s in each precision and bf16 / fp32 (the ratio of the
medians and the median of the rounds' own ratios), and per precision the median of the
rounds' new / old. A run during which other processes used a tenth of a core or more (from
/proc/stat less the run's own CPU time, screening.py) is run again, at most 3 times; the
counts of reruns and of runs that still had company are printed.

Example (the CNN, the README's figures of 2026-12-08):
  bench/compare_builds.py --old /tmp/old/build/release/bench/bench_mlp --rounds 24 \\
      -- --model cnn --batch 128 --threads 2 --steps 60 --warmup 10
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from screening import run_screened  # noqa: E402

RERUN = [0, 0]  # runs run again; runs that still had company after 3 tries
SEEN = {}  # (binary, precision) -> the kernel and checksum it printed


def run(binary, args, precision):
    for tries in range(3):
        out, others = run_screened([binary] + args + ["--precision", precision, "--json"])
        if others < 0.1:
            break
        if tries < 2:
            RERUN[0] += 1
        else:
            RERUN[1] += 1
    try:
        d = json.loads(out)
        SEEN[(binary, precision)] = "%s kernels, checksum %s" % (d["kernel"], d["params_fnv"])
        return d["samples_per_second"]
    except (ValueError, KeyError) as e:
        sys.exit("compare_builds: %s printed no samples_per_second (%s)" % (binary, e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Arguments after -- go to both bench_mlp runs.")
    ap.add_argument("--old", required=True, help="bench_mlp of the older build")
    ap.add_argument("--new", default="build/release/bench/bench_mlp",
                    help="bench_mlp of the newer build (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=12, help="rounds (default %(default)s)")
    ap.add_argument("--precision", default="fp32,bf16",
                    help="comma-separated: fp32, bf16 (default %(default)s)")
    ap.add_argument("bench_args", nargs="*", help="bench_mlp's arguments")
    a = ap.parse_args()
    if a.rounds < 1:
        sys.exit("compare_builds: --rounds must be at least 1")
    precisions = [p for p in a.precision.split(",") if p]
    if not precisions or any(p not in ("fp32", "bf16") for p in precisions):
        sys.exit("compare_builds: --precision takes fp32 and/or bf16, not '%s'" % a.precision)
    builds = {"old": a.old, "new": a.new}
    for name, path in builds.items():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit("compare_builds: --%s %s is not an executable file" % (name, path))
    keys = [(b, p) for b in builds for p in precisions]
    res = {k: [] for k in keys}
    for r in range(a.rounds):
        for b, p in keys if r % 2 == 0 else keys[::-1]:
            res[(b, p)].append(run(builds[b], a.bench_args, p))
        print("round %d of %d done" % (r + 1, a.rounds), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in res.items()}
    print("medians of %d alternating rounds (samples/s): %s" % (a.rounds, " ".join(a.bench_args)))
    print("runs repeated because other processes used the CPU: %d; still shared after 3 tries: "
          "%d" % (RERUN[0], RERUN[1]))
    for b in builds:
        for p in precisions:
            print("%s %s: %s" % (b, p, SEEN[(builds[b], p)]))
    for b in builds:
        line = "%-4s %s" % (b, "  ".join("%s %.0f" % (p, med[(b, p)]) for p in precisions))
        if len(precisions) == 2:
            own = [x / y for x, y in zip(res[(b, "bf16")], res[(b, "fp32")])]
            line += "  bf16/fp32 %.3f (rounds' own: median %.3f, %.2f to %.2f)" % (
                med[(b, "bf16")] / med[(b, "fp32")], statistics.median(own), min(own), max(own))
        print(line)
    for p in precisions:
        own = [x / y for x, y in zip(res[("new", p)], res[("old", p)])]
        print("new/old %s: median of the rounds' own %.3f (%.2f to %.2f)" %
              (p, statistics.median(own), min(own), max(own)))


if __name__ == "__main__":
    main()
