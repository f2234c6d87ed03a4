#!/usr/bin/python3
"""bench/torch_settings.coretype_env: PyTorch's side of a comparison runs the best OpenBLAS
kernel the CPU's flags allow, even when the environment names a slower one (this project's VM
sets OPENBLAS_CORETYPE=Haswell for every process, on hosts with AVX-512), unless the caller
asks to keep it (BRISK_KEEP_CORETYPE=1). The CPU and OpenBLAS are stood in for, so the test
means the same on every machine.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch_settings  # noqa: E402


def check(own, best, env, want):
    torch_settings.openblas_kernel = lambda: own
    torch_settings.best_kernel_for_cpu = lambda: best
    got = torch_settings.coretype_env(env).get("OPENBLAS_CORETYPE")
    if got != want:
        print("OpenBLAS picks %s, the CPU allows %s, env %s: OPENBLAS_CORETYPE %s, expected %s"
              % (own, best, env, got, want))
        return 1
    return 0


fails = 0
fails += check("Haswell", "Cooperlake", {}, "Cooperlake")  # OpenBLAS's own pick is slower
fails += check("Cooperlake", "Cooperlake", {}, None)  # nothing to do
fails += check("Cooperlake", "Cooperlake", {"OPENBLAS_CORETYPE": "Haswell"}, "Cooperlake")
fails += check("Zen", "Haswell", {"OPENBLAS_CORETYPE": "SkylakeX"}, "SkylakeX")  # not weaker
fails += check("Cooperlake", "Cooperlake",
               {"OPENBLAS_CORETYPE": "Haswell", "BRISK_KEEP_CORETYPE": "1"}, "Haswell")
fails += check(None, "Cooperlake", {}, None)  # not OpenBLAS (MKL): left alone
print("torch_settings: %s" % ("ok" if not fails else "%d failures" % fails))
sys.exit(1 if fails else 0)
