#!/usr/bin/python3
"""Brisk's training speed when another program competes for the cores, side by side in one run.

For each model, under each load, runs bench_mlp at 1 thread and at every core, alternating,
--repeats rounds, and prints the medians, their ratio, and the median of each round's own
ratio (a round's runs are seconds apart, so the host's drift between rounds moves both):

- quiet: nothing else runs (a round during which other processes used more than a tenth of a
  core, from /proc/stat against the round's own CPU time, is run again, at most 3 times);
- busy: one busy loop at normal priority, pinned to the last CPU this process may use;
- nice19: --nice-loops busy loops at nice 19, not pinned.

At every core it also runs with --fixed-threads (all threads take part in every step, as
before the trainer adapted their number), and, given --baseline (a bench_mlp built from an
older commit), that build too, so that a change shows against what it replaced in the same
run. Every run of a model must train the same weights (the checksum), whatever the threads
and the load.

--precision fp32,bf16 also runs Brisk with bfloat16 products (1 thread and every core; the
baseline too, at every core, in a table of its own next to this build in each precision), and
--torch adds PyTorch under the same loads, in the same rounds: torch_mlp.py at every setting
of compare_mlp.py (intra-op x OpenBLAS threads, with and without OMP_WAIT_POLICY=PASSIVE),
in fp32 (a quarter of the steps) and, with bf16 in --precision, under
torch.autocast(bfloat16) (a fortieth: without bfloat16 instructions it runs some 20 times
slower); for each load its 1-thread setting and its best setting are reported next to
Brisk's.

Usage: bench/compare_contention.py [--bench build/release/bench/bench_mlp]
           [--baseline OLD_BENCH_MLP] [--config MODEL:BATCH:STEPS ...] [--repeats 3]
           [--loads quiet,busy,nice19] [--nice-loops 2] [--precision fp32,bf16] [--torch]
           [--json FILE]
Defaults: the three models of the README's speed table (784-256-128-10:128:1500,
784-1024-1024-10:256:120, cnn:128:60).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from screening import run_screened

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_settings  # noqa: E402


def timed(cmd):
    """Runs cmd (bench_mlp --json); returns (its JSON, the cores others used meanwhile)."""
    out, others = run_screened(cmd)
    return json.loads(out), others


class Load:
    """Starts the competing processes of a load, and stops them."""

    def __init__(self, name, nice_loops):
        self.name, self.procs = name, []
        cpus = sorted(os.sched_getaffinity(0))
        if name == "busy":
            self.procs.append(subprocess.Popen(
                ["taskset", "-c", str(cpus[-1]), "sh", "-c", "while :; do :; done"]))
        elif name == "nice19":
            for _ in range(nice_loops):
                self.procs.append(subprocess.Popen(
                    ["nice", "-n", "19", "sh", "-c", "while :; do :; done"]))
        elif name != "quiet":
            sys.exit("compare_contention: unknown load '%s' (quiet, busy, nice19)" % name)
        time.sleep(0.3)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="build/release/bench/bench_mlp")
    ap.add_argument("--baseline", help="a bench_mlp built from an older commit")
    ap.add_argument("--config", action="append",
                    help="MODEL:BATCH:STEPS (repeatable)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loads", default="quiet,busy,nice19")
    ap.add_argument("--nice-loops", type=int, default=2)
    ap.add_argument("--json", help="also write every round's figures to this file")
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated: fp32, bf16 (default %(default)s)")
    ap.add_argument("--torch", action="store_true",
                    help="also PyTorch (torch_mlp.py) at every setting, in each precision")
    a = ap.parse_args()
    precisions = a.precision.split(",")
    if any(p not in ("fp32", "bf16") for p in precisions) or "fp32" not in precisions:
        sys.exit("compare_contention: --precision is fp32 or fp32,bf16")
    for b in [a.bench] + ([a.baseline] if a.baseline else []):
        if not os.access(b, os.X_OK):
            sys.exit("compare_contention: %s is not built (cmake --build build/release)" % b)
    configs = a.config or ["784-256-128-10:128:1500", "784-1024-1024-10:256:120",
                           "cnn:128:60"]
    T = len(os.sched_getaffinity(0))
    if T < 2:
        sys.exit("compare_contention: this process may use one CPU only")
    rows, record = [], []
    kernels = {}  # what ran each side's products
    tsettings = torch_settings.settings(T) if a.torch else []
    py = torch_settings.python_with_torch("compare_contention") if a.torch else None
    tenv = torch_settings.coretype_env(os.environ)
    for conf in configs:
        try:
            model, batch, steps = conf.split(":")
            int(batch), int(steps)
        except ValueError:
            sys.exit("compare_contention: --config %s is not MODEL:BATCH:STEPS" % conf)
        base = ["--model", model, "--batch", batch, "--steps", steps,
                "--warmup", str(max(5, int(steps) // 10)), "--json"]
        sides = {"1 thread": [a.bench, "--threads", "1"] + base,
                 "%d threads" % T: [a.bench, "--threads", str(T)] + base,
                 "%d fixed" % T: [a.bench, "--threads", str(T), "--fixed-threads"] + base}
        if a.baseline:
            sides["%d baseline" % T] = [a.baseline, "--threads", str(T)] + base
        if "bf16" in precisions:
            sides["1 thread bf16"] = [a.bench, "--threads", "1", "--precision", "bf16"] + base
            sides["%d threads bf16" % T] = [a.bench, "--threads", str(T), "--precision",
                                            "bf16"] + base
            if a.baseline:
                sides["%d baseline bf16" % T] = [a.baseline, "--threads", str(T),
                                                 "--precision", "bf16"] + base
        # PyTorch: one process per (OpenBLAS threads, wait policy) and precision, each running
        # every intra-op count in turn; its results are keyed "torch <setting> <precision>".
        tprocs = {}
        # PyTorch tries 8 settings a round: a quarter of Brisk's steps in fp32, and a
        # fortieth under autocast, which runs some 20 times slower than fp32 on a CPU
        # without bfloat16 instructions (samples/s are per sample either way).
        tsteps = {"fp32": max(8, int(steps) // 4), "bf16": max(4, int(steps) // 40)}
        for prec in precisions if a.torch else []:
            for o, w in sorted({(st[1], st[2]) for st in tsettings}, key=str):
                counts = [st[0] for st in tsettings if st[1:] == (o, w)]
                tprocs[("torch", o, w, prec)] = (
                    [py, os.path.join(HERE, "torch_mlp.py"), "--model", model,
                     "--batch", batch, "--threads", ",".join(map(str, counts)),
                     "--steps", str(tsteps[prec]), "--warmup", str(max(2, tsteps[prec] // 10)),
                     "--precision", prec], torch_settings.setting_env(tenv, o, w))
        fnv = {p: set() for p in precisions}
        for load_name in a.loads.split(","):
            sps = {k: [] for k in sides}
            for (_, o, w, prec) in tprocs:
                for st in tsettings:
                    if st[1:] == (o, w):
                        sps[("torch", st, prec)] = []
            in_use = []
            screened = 0
            load = Load(load_name, a.nice_loops)
            try:
                for r in range(a.repeats):
                    for name, cmd in sides.items():
                        for _ in range(3):
                            j, others = timed(cmd)
                            if load_name != "quiet" or others < 0.1:
                                break
                            screened += 1
                        sps[name].append(j["samples_per_second"])
                        kernels["Brisk"] = j["kernel"]
                        fnv["bf16" if name.endswith("bf16") else "fp32"].add(j["params_fnv"])
                        if name == "%d threads" % T and "steps_by_threads_in_use" in j:
                            in_use.append(j["steps_by_threads_in_use"])
                        record.append({"model": model, "batch": int(batch), "load": load_name,
                                       "side": name, "round": r + 1,
                                       "samples_per_second": j["samples_per_second"],
                                       "others_cores": others, "params_fnv": j["params_fnv"],
                                       "steps_by_threads_in_use":
                                           j.get("steps_by_threads_in_use")})
                        print("%s, %s, round %d, %s: %.0f samples/s (others used %.2f cores)"
                              % (model, load_name, r + 1, name, j["samples_per_second"],
                                 others), flush=True)
                    for key, (cmd, env) in tprocs.items():
                        for _ in range(3):
                            out, others = run_screened(cmd, env)
                            if load_name != "quiet" or others < 0.1:
                                break
                            screened += 1
                        for line in out.strip().splitlines():
                            j = json.loads(line)
                            kernels["PyTorch %s" % j["torch"]] = j["kernel"]
                            st = (j["threads"], key[1], key[2])
                            sps[("torch", st, key[3])].append(j["samples_per_second"])
                            record.append({"model": model, "batch": int(batch),
                                           "load": load_name, "side": "pytorch",
                                           "setting": torch_settings.describe(st),
                                           "precision": key[3], "round": r + 1,
                                           "samples_per_second": j["samples_per_second"],
                                           "others_cores": others})
                        print("%s, %s, round %d, PyTorch %s, OpenBLAS %d%s: done"
                              % (model, load_name, r + 1, key[3], key[1],
                                 ", " + key[2] if key[2] else ""), flush=True)
            finally:
                load.stop()
            med = {k: statistics.median(v) for k, v in sps.items()}
            fewer = 0
            for h in in_use:
                fewer += sum(h[:-1]) / max(1, sum(h))
            # Each round's own ratio of every core to 1 thread (the two runs of a round are
            # seconds apart, the rounds minutes): its median, steadier than the ratio of the
            # medians when the machine's speed drifts between rounds.
            own = statistics.median(t / o for t, o in zip(sps["%d threads" % T],
                                                           sps["1 thread"]))
            rows.append((model, batch, load_name, med, T, fewer / max(1, len(in_use)),
                         screened, own))
        for prec, sums in fnv.items():
            if len(sums) != 1:
                sys.exit("compare_contention: %s (%s) trained different weights in different "
                         "runs: %s" % (model, prec, sorted(sums)))
    print("\nmedians of %d alternating rounds (samples/s); %d CPUs; busy: one loop at nice 0 "
          "on CPU %d; nice19: %d loops at nice 19" % (a.repeats, T,
                                                      sorted(os.sched_getaffinity(0))[-1],
                                                      a.nice_loops))
    print("kernels: %s; a quiet round during which other processes used a tenth of a core or "
          "more was run again (at most 3 times)"
          % "; ".join("%s: %s" % kv for kv in sorted(kernels.items())))
    head = ("| model, batch | load | 1 thread | %d threads | ratio | rounds' own | %d, fixed | "
            "ratio |" % (T, T))
    sep = "|---|---|---|---|---|---|---|---|"
    if a.baseline:
        head += " %d, baseline | ratio |" % T
        sep += "---|---|"
    print(head + " steps with fewer threads |")
    print(sep + "---|")
    for model, batch, load_name, med, T, fewer, screened, own in rows:
        one = med["1 thread"]
        line = "| %s, %s | %s | %.0f | %.0f | **%.2fx** | %.2fx | %.0f | %.2fx |" % (
            model, batch, load_name, one, med["%d threads" % T], med["%d threads" % T] / one,
            own, med["%d fixed" % T], med["%d fixed" % T] / one)
        if a.baseline:
            b = med["%d baseline" % T]
            line += " %.0f | %.2fx |" % (b, b / one)
        print(line + " %.0f%% |" % (100 * fewer))
    if a.baseline and "bf16" in precisions:
        print("\nthe baseline in each precision (medians, samples/s, %d threads)" % T)
        print("| model, batch | load | fp32 | baseline fp32 | ratio | bf16 | baseline bf16 | "
              "ratio | bf16 / fp32 | baseline bf16 / fp32 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for model, batch, load_name, med, T, fewer, screened, own in rows:
            f, fb = med["%d threads" % T], med["%d baseline" % T]
            h, hb = med["%d threads bf16" % T], med["%d baseline bf16" % T]
            print("| %s, %s | %s | %.0f | %.0f | **%.2fx** | %.0f | %.0f | **%.2fx** | %.2fx | "
                  "%.2fx |" % (model, batch, load_name, f, fb, f / fb, h, hb, h / hb, h / f,
                               hb / fb))
    for prec in precisions if (a.torch or "bf16" in precisions) else []:
        tag = " bf16" if prec == "bf16" else ""
        print("\n%s: Brisk against PyTorch under the same loads (medians, samples/s)%s"
              % (prec, "" if prec == "fp32" else "; Brisk's products on bfloat16 operands, "
                 "PyTorch under autocast(bfloat16)"))
        print("| model, batch | load | Brisk 1 thread | Brisk %d threads | ratio | PyTorch 1 "
              "thread | PyTorch's best | its setting | ratio | Brisk / PyTorch's best |" % T)
        print("|---|---|---|---|---|---|---|---|---|---|")
        for model, batch, load_name, med, T, fewer, screened, own in rows:
            b1, bt = med["1 thread" + tag], med["%d threads%s" % (T, tag)]
            line = "| %s, %s | %s | %.0f | %.0f | %.2fx |" % (model, batch, load_name, b1, bt,
                                                              bt / b1)
            tk = {k[1]: v for k, v in med.items() if isinstance(k, tuple) and k[2] == prec}
            if tk:
                one = tk.get((1, 1, None), min(tk.values()))
                best = max(tk, key=tk.get)
                line += " %.0f | %.0f | %s | %.2fx | **%.2fx** |" % (
                    one, tk[best], torch_settings.describe(best), tk[best] / one,
                    bt / tk[best])
            else:
                line += " - | - | - | - | - |"
            print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
