#!/usr/bin/python3
"""PyTorch side of Brisk's throughput benchmarks.

Trains the same model as bench_mlp (an MLP shorthand "784-256-10": Linear layers with ReLU; or
a Brisk layer list or preset such as "cnn" on 1x28x28 images, built by tests/brisk_torch.py),
with softmax cross-entropy and Adam, on synthetic uint8 data scaled to [0, 1], and prints one JSON line with samples/s and the
OpenBLAS kernel that PyTorch's BLAS actually ran. The caller sets OPENBLAS_CORETYPE and
OPENBLAS_NUM_THREADS in the environment before this process starts (OpenBLAS reads them once,
at load time); --threads sets PyTorch's own intra-op pool to the same count.
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="784-256-128-10",
                    help="widths, a layer list or a preset (default %(default)s)")
    ap.add_argument("--batch", type=int, default=128, help="batch size (default %(default)s)")
    ap.add_argument("--threads", default="1",
                    help="torch.set_num_threads; a comma-separated list runs each in turn in this "
                         "process, one JSON line each (default %(default)s)")
    ap.add_argument("--steps", type=int, default=200, help="timed steps (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="seed (default %(default)s)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: the forward pass and loss under torch.autocast('cpu', "
                         "dtype=torch.bfloat16), PyTorch's mixed precision (default %(default)s)")
    a = ap.parse_args()

    import torch
    import torch.nn as nn
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    sys.path.insert(0, os.path.join(here, "..", "tests"))
    import brisk_torch
    from torch_settings import torch_blas_kernel

    for threads in [int(t) for t in a.threads.split(",")]:
        print(json.dumps(run(torch, nn, brisk_torch, torch_blas_kernel, a, threads)), flush=True)


def run(torch, nn, brisk_torch, torch_blas_kernel, a, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)
    shape = brisk_torch.input_shape(a.model)
    model, out_shape = brisk_torch.build(a.model, shape)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    n = 16 * a.batch
    g = torch.Generator().manual_seed(a.seed)
    x8 = torch.randint(0, 256, (n,) + tuple(shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, out_shape[0], (n,), generator=g)

    def step(i):
        lo = (i * a.batch) % n
        xb = x8[lo:lo + a.batch].float().mul_(1.0 / 255.0)
        yb = y[lo:lo + a.batch]
        opt.zero_grad(set_to_none=True)
        if a.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(model(xb), yb)
        else:
            loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    for i in range(a.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(a.steps):
        loss = step(i)
    float(loss)
    dt = time.perf_counter() - t0
    return {
        "impl": "pytorch",
        "torch": torch.__version__,
        "model": a.model,
        "batch": a.batch,
        "threads": threads,
        "precision": a.precision,
        "openblas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "kernel": torch_blas_kernel(torch),
        "samples_per_second": a.steps * a.batch / dt,
    }


if __name__ == "__main__":
    sys.exit(main())
