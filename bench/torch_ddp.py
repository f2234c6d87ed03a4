#!/usr/bin/python3
"""PyTorch DistributedDataParallel side of Brisk's multi-process benchmark.

Starts P processes (torch.multiprocessing, gloo backend on loopback, --threads intra-op and
--openblas-threads OpenBLAS threads each, 1 and 1 by default), trains the same model as bench_mlp (widths with ReLU, or a layer list;
softmax cross-entropy, Adam lr 1e-3) on synthetic uint8 data, the global batch B split evenly over the ranks, and
prints one JSON line with the global samples/s measured on rank 0 and the OpenBLAS kernel.
The caller sets OPENBLAS_CORETYPE in the environment.

Usage: torch_ddp.py --procs P [--model 784-1024-1024-10] [--batch 256] [--steps 40]
                    [--threads I] [--openblas-threads O]
"""
import argparse
import json
import os
import sys
import time


def worker(rank, a, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import brisk_torch
    from torch_settings import torch_blas_kernel

    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.procs)
    torch.manual_seed(a.seed)
    shape = brisk_torch.input_shape(a.model)
    net, out_shape = brisk_torch.build(a.model, shape)
    model = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    local = a.batch // a.procs
    n = 16 * a.batch
    g = torch.Generator().manual_seed(a.seed)
    x8 = torch.randint(0, 256, (n,) + tuple(shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, out_shape[0], (n,), generator=g)

    def step(i):
        lo = (i * a.batch + rank * local) % n
        xb = x8[lo:lo + local].float().mul_(1.0 / 255.0)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), y[lo:lo + local])
        loss.backward()
        opt.step()
        return loss

    for i in range(a.warmup):
        step(i)
    dist.barrier()
    t0 = time.perf_counter()
    for i in range(a.steps):
        loss = step(i)
    float(loss)
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        out.put({"impl": "torch-ddp", "model": a.model, "batch": a.batch, "processes": a.procs,
                 "threads": a.threads, "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"],
                 "kernel": torch_blas_kernel(torch), "torch": torch.__version__,
                 "samples_per_second": round(a.steps * a.batch / dt, 1)})
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, required=True)
    ap.add_argument("--model", default="784-1024-1024-10")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=29517)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    ap.add_argument("--openblas-threads", type=int, default=1, help="OpenBLAS threads per rank")
    a = ap.parse_args()
    if a.batch % a.procs:
        sys.exit("torch_ddp.py: --batch must be a multiple of --procs")
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.openblas_threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    sys.path.insert(0, os.path.join(here, "..", "tests"))
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    procs = [ctx.Process(target=worker, args=(r, a, a.port, out)) for r in range(a.procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        sys.exit("torch_ddp.py: a rank failed")
    print(json.dumps(out.get()))


if __name__ == "__main__":
    main()
