#!/usr/bin/python3
"""Projects Brisk's training step time to more cores than this machine has.

From a profile of one thread (bench_mlp --threads 1: the time of the shards' forward and
backward, and of the reduction and update) and the memory bandwidth measured here, it
estimates the step at T threads:

  shards phase:  Brisk's own plan (whole shards one per thread while every thread gets one,
                 the rest shared by teams), with each matrix product split between a team's
                 threads exactly as brisk_gemm_split does; a product takes as long as its
                 busiest thread, at the multiply-add rate the one-thread profile shows; plus
                 a barrier per layer and per phase at --barrier-us each.
  update phase:  memory-bound (reading and writing every gradient, parameter and moment), so
                 the one-thread time divided by the bandwidth gain: min(T, cap / one core),
                 where cap is the whole machine's bandwidth (--bandwidth-cap GB/s; by default
                 what all cores here reach together, scaled by --cap-cores).

It also projects T = the cores here and prints the measurement beside it, which says how far
to trust the rest. The projection ignores caches shared between cores, memory traffic of
the shards phase and frequency changes with load.

Usage: bench/project_scaling.py [--brisk build/release/bench/bench_mlp] [--threads 4,8,16,32]
                                [--batches 256,1024] [--bandwidth-cap GBS] [--barrier-us 2]
"""
import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

MR = 6  # rows per register block of brisk_gemm (core/src/gemm.c)


def gemm_split(M, N, ith, nth):
    """brisk_gemm_split (core/src/gemm.c), in Python: thread ith's block of an (M, N) output."""
    if nth <= 1:
        return 0, M, 0, N
    mu = (M + MR - 1) // MR
    if mu >= nth:
        return mu * ith // nth * MR, min(M, mu * (ith + 1) // nth * MR), 0, N
    cw = 64 if (N + 63) // 64 >= nth else 16
    nu = (N + cw - 1) // cw
    pm = max(mu, 1)
    pn = min(nth // pm, nu)
    if pn < 1:
        pm, pn = nth, 1
    if ith >= pm * pn:
        return 0, 0, 0, 0
    im, jn = ith // pn, ith % pn
    return (mu * im // pm * MR, min(M, mu * (im + 1) // pm * MR),
            nu * jn // pn * cw, min(N, nu * (jn + 1) // pn * cw))


def busiest(M, N, K, nth):
    """Multiply-adds of the busiest of nth threads sharing an (M, N, K) product."""
    worst = 0
    for ith in range(nth):
        m0, m1, n0, n1 = gemm_split(M, N, ith, nth)
        worst = max(worst, max(0, m1 - m0) * max(0, n1 - n0) * K)
    return worst


def shard_products(widths, n):
    """The products of one shard of n samples: forward, weight gradient, input gradient."""
    out = []
    for l in range(len(widths) - 1):
        i, o = widths[l], widths[l + 1]
        out.append((o, n, i))          # z = W x
        out.append((o, i, n))          # dW = dz x^T
        if l > 0:
            out.append((i, n, o))      # dx = W^T dz
    return out


def shard_time(widths, n, nth, rate, barrier):
    """Seconds for a team of nth threads to do one shard of n samples."""
    macs = sum(busiest(M, N, K, nth) for M, N, K in shard_products(widths, n))
    barriers = 2 * (len(widths) - 1) + 3 if nth > 1 else 0
    return macs / rate + barriers * barrier


def shards_phase(widths, B, micro, T, rate, barrier):
    """Brisk's plan: whole shards round-robin while every thread gets one, then teams."""
    sizes = [min(micro, B - s * micro) for s in range((B + micro - 1) // micro)]
    S = len(sizes)
    R = S % T
    full = S - R
    per_thread = [0.0] * T
    for k in range(full):
        per_thread[k % T] += shard_time(widths, sizes[k], 1, rate, barrier)
    for r in range(R):
        team = [w for w in range(T) if w % R == r]
        t = shard_time(widths, sizes[full + r], len(team), rate, barrier)
        for w in team:
            per_thread[w] += t
    return max(per_thread) + barrier


def copy_bandwidth(_):
    import numpy as np
    a = np.ones(32 << 20, dtype=np.float32)
    b = np.empty_like(a)
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9  # read + write, GB/s


def bandwidth(procs):
    """Total copy bandwidth of procs processes copying at once (GB/s)."""
    with mp.Pool(procs) as pool:
        return sum(pool.map(copy_bandwidth, range(procs)))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brisk", default="build/release/bench/bench_mlp")
    ap.add_argument("--models", default="784-256-128-10,784-1024-1024-10")
    ap.add_argument("--threads", default="4,8,16,32")
    ap.add_argument("--batches", default="256,1024")
    ap.add_argument("--micro-batch", type=int, default=0, help="default: brisk-train's")
    ap.add_argument("--bandwidth-cap", type=float, default=0,
                    help="the projected machine's total memory bandwidth, GB/s (default: "
                         "one core's here x --cap-cores)")
    ap.add_argument("--cap-cores", type=float, default=8,
                    help="cores' worth of bandwidth the big machine has (default %(default)s)")
    ap.add_argument("--barrier-us", type=float, default=2.0,
                    help="cost of one barrier among the threads, microseconds")
    a = ap.parse_args()
    local = os.cpu_count()
    bw1, bwl = bandwidth(1), bandwidth(local)
    cap = a.bandwidth_cap or bw1 * a.cap_cores
    print("Memory copy bandwidth here: %.1f GB/s on one core, %.1f GB/s on all %d; projected "
          "machine's cap %.0f GB/s (%.1f cores' worth); barrier %.1f us.\n"
          % (bw1, bwl, local, cap, cap / bw1, a.barrier_us))
    barrier = a.barrier_us * 1e-6
    for model in a.models.split(","):
        widths = [int(w) for w in model.split("-")]
        for B in (int(b) for b in a.batches.split(",")):
            steps = max(4, int(2e7 // (B * sum(widths[i] * widths[i + 1]
                                                for i in range(len(widths) - 1)))))
            cmd = [a.brisk, "--model", model, "--batch", str(B), "--threads", "1",
                   "--steps", str(steps), "--warmup", str(max(2, steps // 10)), "--json"]
            if a.micro_batch:
                cmd += ["--micro-batch", str(a.micro_batch)]
            one = run_json(cmd)
            micro = one["micro_batch"]
            t_shards = one["shard_seconds"] / steps
            t_update = one["update_seconds"] / steps
            sizes = [min(micro, B - s * micro) for s in range((B + micro - 1) // micro)]
            macs = sum(M * N * K for n in sizes for M, N, K in shard_products(widths, n))
            rate = macs / t_shards  # multiply-adds per second, one thread, all included
            print("%s, batch %d, micro-batch %d: one thread %.2f ms per step (shards %.2f, "
                  "update %.2f), %.1f G multiply-adds/s\n"
                  % (model, B, micro, 1e3 * (t_shards + t_update), 1e3 * t_shards,
                     1e3 * t_update, rate / 1e9))
            print("| T | projected step ms | projected samples/s | vs 1 thread | measured here |")
            print("|---|---|---|---|---|")
            for T in [1, local] + [int(t) for t in a.threads.split(",")]:
                ts = shards_phase(widths, B, micro, T, rate, barrier)
                gain = min(T, (bwl if T <= local else cap) / bw1)
                tu = t_update / max(gain, 1.0) + (2 * barrier if T > 1 else 0)
                meas = "-"
                if T <= local:
                    m = run_json(cmd[:cmd.index("--threads") + 1] + [str(T)] +
                                 cmd[cmd.index("--threads") + 2:])
                    meas = "%s samples/s" % format(round(m["samples_per_second"]), ",")
                print("| %d | %.2f | %s | %.1fx | %s |"
                      % (T, 1e3 * (ts + tu), format(round(B / (ts + tu)), ","),
                         (t_shards + t_update) / (ts + tu), meas))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
