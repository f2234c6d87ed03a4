#!/usr/bin/python3
"""Runs llm.c's PyTorch anchor (torch_gpt2.py) with its two thread pools set apart.

  bench/torch_gpt2_threads.py OPENBLAS_THREADS .../torch_gpt2.py MODEL TOKENS --threads N ...

torch_gpt2.py gives both of PyTorch's pools its --threads before it imports torch. Importing
torch here first, with OPENBLAS_NUM_THREADS=OPENBLAS_THREADS, fixes OpenBLAS's pool at that
count (OpenBLAS reads it once, when it loads); the script's torch.set_num_threads(N) then sets
the intra-op pool alone. Prints the BLAS kernel and both counts as they are in the process.
"""
import ctypes
import os
import runpy
import sys

if len(sys.argv) < 3 or not sys.argv[1].isdigit():
    sys.exit(__doc__)
os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[1]
import torch  # noqa: E402  (OpenBLAS loads here, with the count above)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_settings  # noqa: E402

sys.argv = sys.argv[2:]
script = sys.argv[0]


def openblas_threads():
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            fn = ctypes.CDLL(name).openblas_get_num_threads
        except (OSError, AttributeError):
            continue
        return fn()
    return None


real_set = torch.set_num_threads


def set_intra(n):  # the script's call; report both pools once they are set
    real_set(n)
    print("pools: %d intra-op threads, OpenBLAS %s threads; kernel %s" % (
        torch.get_num_threads(), openblas_threads(), torch_settings.torch_blas_kernel(torch)),
        flush=True)


torch.set_num_threads = set_intra
runpy.run_path(script, run_name="__main__")
