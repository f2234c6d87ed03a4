#!/usr/bin/python3
"""Brisk vs llm.c vs PyTorch training a GPT, side by side in one run.

The three train the same model (an llm.c model file written by the anchor's make_gpt2.py) on
the same batches of the same token file, with llm.c's step (AdamW lr 1e-4, no weight decay):
Brisk through bench/bench_gpt, llm.c's own CPU trainer (train_gpt2.c, built unmodified by the
anchor's Makefile with llm.c's flags), and PyTorch through the anchor's torch_gpt2.py. Shapes:

  small  L 4, C 256, 4 heads, T 128, B 8, a byte vocabulary (fortunes, or this repository's
         text when the fortunes package is not installed)
  gpt2   GPT-2 small's shape: L 12, C 768, 12 heads, T 64, B 4, vocabulary 50257 (50304),
         random tokens (only the shapes matter for time)

Each implementation runs at every sensible setting: Brisk at 1..N threads (and micro-batches
of B and B/2), llm.c at OMP_NUM_THREADS 1..N with and without OMP_WAIT_POLICY=PASSIVE,
PyTorch at 1..N intra-op threads x 1..N OpenBLAS threads (bench/torch_gpt2_threads.py sets
the two apart), with and without PASSIVE and with and without glibc keeping freed memory
(MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=64GiB), and OPENBLAS_CORETYPE set where OpenBLAS
would pick a kernel slower than the CPU runs (bench/torch_settings.py). The kernels each side
ran are printed. The runs alternate, --repeats
rounds; a run's figure is the mean ms per step after two warm-up steps, a setting's the
median over rounds. A run during which other processes used more than a tenth of a core
(/proc/stat against the run's own CPU time) is screened out and run again (at most 3 times).
Brisk's trained weights must have the same checksum at every thread count.

Usage: bench/compare_gpt.py [--anchor ../shared/anchors/llmc] [--shapes small,gpt2]
                            [--threads 1,2] [--repeats 3] [--brisk build/release/bench/bench_gpt]
Prints a Markdown table per shape, each setting's median, and the ratios of the bests.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_settings  # noqa: E402
from screening import run_screened  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SHAPES = {  # L, C, NH, V, Vp, maxT, B, T, steps
    "small": (4, 256, 4, 256, 256, 128, 8, 128, 12),
    "gpt2": (12, 768, 12, 50257, 50304, 1024, 4, 64, 6),
}
KEEP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}


def gflop(shape):
    """Nominal FLOPs per step as the anchor counts them: dense 6 B T (12 L C^2 + Vp C),
    attention 12 L B T^2 C (the full T x T)."""
    L, C, _, _, Vp, _, B, T, _ = SHAPES[shape]
    return (6 * B * T * (12 * L * C * C + Vp * C) + 12 * L * B * T * T * C) / 1e9


def timed(cmd, env, steps):
    """Runs cmd; returns (mean ms per step after 2 warm-up steps, others' cores, stdout)."""
    out, others = run_screened(cmd, env)
    ms = [float(m) for m in re.findall(r"took ([0-9.]+) ms", out)]
    if len(ms) < steps:
        sys.exit("%s printed %d step times, expected %d:\n%s" % (cmd[0], len(ms), steps, out))
    return statistics.mean(ms[2:steps]), others, out


def prepare(anchor, work, shapes, src):
    d = os.path.join(work, "llmc")
    shutil.copytree(anchor, d)
    subprocess.run(["make", "-s", "-C", d], check=True, capture_output=True)
    files = {}
    for s in shapes:
        L, C, NH, V, Vp, maxT, _, _, _ = SHAPES[s]
        model = os.path.join(d, s + ".bin")
        subprocess.run([PY, os.path.join(d, "make_gpt2.py"), "model", model, "--L", str(L),
                        "--C", str(C), "--NH", str(NH), "--V", str(V), "--Vp", str(Vp),
                        "--maxT", str(maxT)], check=True, capture_output=True)
        tokens = os.path.join(d, s + "_tokens.bin")
        if V == 256 and os.path.isdir("/usr/share/games/fortunes"):
            args = ["--fortunes"]
        elif V == 256:
            text = os.path.join(d, "text.txt")
            with open(text, "wb") as f:
                for root, _, names in os.walk(src):
                    for n in sorted(names):
                        if n.endswith((".md", ".c", ".h")) and "/build" not in root:
                            f.write(open(os.path.join(root, n), "rb").read())
            args = ["--text", text]
        else:
            args = ["--random", str(V), "--n", str(1 << 20)]
        subprocess.run([PY, os.path.join(d, "make_gpt2.py"), "tokens", tokens] + args,
                       check=True, capture_output=True)
        files[s] = (model, tokens)
    return d, files


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchor", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "..", "..", "shared", "anchors", "llmc"))
    ap.add_argument("--brisk", default="build/release/bench/bench_gpt")
    ap.add_argument("--shapes", default="small,gpt2")
    ap.add_argument("--threads", default="1,%d" % os.cpu_count() if os.cpu_count() > 1 else "1")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    shapes = a.shapes.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    if not os.path.exists(os.path.join(a.anchor, "torch_gpt2.py")):
        sys.exit("no llm.c anchor at %s (give --anchor)" % a.anchor)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="compare_gpt.")
    try:
        d, files = prepare(a.anchor, work, shapes, src)
        for s in shapes:
            L, C, NH, V, Vp, maxT, B, T, steps = SHAPES[s]
            model, tokens = files[s]
            runs = []  # (implementation, setting, cmd, env)
            base = dict(os.environ)
            for t in threads:
                for mb in sorted({B, max(1, B // 2)}, reverse=True):
                    runs.append(("Brisk", "%d threads, micro-batch %d" % (t, mb),
                                 [a.brisk, model, tokens, "--B", str(B), "--T", str(T),
                                  "--steps", str(steps), "--threads", str(t), "--micro-batch",
                                  str(mb), "--json"], base))
                for passive in (False, True):
                    if passive and t == 1:
                        continue
                    env = dict(base, OMP_NUM_THREADS=str(t))
                    if passive:
                        env["OMP_WAIT_POLICY"] = "PASSIVE"
                    runs.append(("llm.c", "%d threads%s" % (t, ", PASSIVE" if passive else ""),
                                 [os.path.join(d, "build", "train_gpt2_bench"), model, tokens,
                                  str(B), str(T), str(steps)], env))
                    for ob in torch_settings.thread_counts(max(threads)):
                        for keep in (False, True):
                            env2 = torch_settings.coretype_env(dict(env, **KEEP) if keep else env)
                            runs.append(("PyTorch", "%d intra-op + %d OpenBLAS threads%s%s" % (
                                t, ob, ", PASSIVE" if passive else "",
                                ", malloc-keep" if keep else ""),
                                [PY, os.path.join(HERE, "torch_gpt2_threads.py"), str(ob),
                                 os.path.join(d, "torch_gpt2.py"), model, tokens, "--B", str(B),
                                 "--T", str(T), "--steps", str(steps), "--threads", str(t)],
                                env2))
            results = {(r[0], r[1]): [] for r in runs}
            sums = {}
            kernels = {}
            screened = 0
            for rep in range(a.repeats):
                for impl, setting, cmd, env in runs:
                    for attempt in range(3):
                        ms, others, out = timed(cmd, env, steps)
                        if others <= 0.1:
                            break
                        screened += 1
                    results[(impl, setting)].append(ms)
                    if impl == "Brisk":
                        m = re.search(r'"params_checksum": "([0-9a-f]+)"', out)
                        sums.setdefault(setting.split(",")[1], set()).add(m.group(1))
                    k = re.search(r"kernels: (\S+)|kernel (.+)$", out, re.M)
                    if k:
                        kernels[impl] = k.group(1) or k.group(2)
                    print("%s %s round %d: %s %s: %.1f ms/step" % (s, "." * 0, rep + 1, impl,
                                                                    setting, ms),
                          file=sys.stderr, flush=True)
            g = gflop(s)
            print("\n### %s: L %d, C %d, %d heads, T %d, B %d, vocabulary %d (%d); %.2f GFLOP "
                  "per step (nominal)\n" % (s, L, C, NH, T, B, V, Vp, g))
            print("| implementation | setting | ms/step (median of %d) | GFLOP/s |" % a.repeats)
            print("|---|---|---|---|")
            best = {}
            for (impl, setting), v in results.items():
                med = statistics.median(v)
                print("| %s | %s | %.1f | %.1f |" % (impl, setting, med, g / med * 1e3))
                if impl not in best or med < best[impl][0]:
                    best[impl] = (med, setting)
            print("\nbest: " + "; ".join("%s %.1f ms (%s)" % (k, v[0], v[1]) for k, v in best.items()))
            if "Brisk" in best:
                for other in ("PyTorch", "llm.c"):
                    if other in best:
                        print("Brisk's best is %.2fx %s's best" % (best[other][0] / best["Brisk"][0], other))
            ok = all(len(v) == 1 for v in sums.values())
            print("Brisk's weights after %d steps: %s at every thread count%s" % (
                steps, "the same checksum" if ok else "DIFFERENT checksums",
                "" if ok else " " + json.dumps({k: sorted(v) for k, v in sums.items()})))
            print("kernels: Brisk %s; PyTorch %s; llm.c its own loops (-Ofast -march=native, OpenMP)" % (
                kernels.get("Brisk", "?"), kernels.get("PyTorch", "?")))
            print("runs screened out (other processes busy): %d" % screened)
            if not ok:
                return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
