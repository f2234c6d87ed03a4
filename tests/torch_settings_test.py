#!/usr/bin/python3
"""bench/torch_settings.coretype_env: PyTorch's side of a comparison runs the best OpenBLAS
kernel the CPU's flags allow, even when the environment names a slower one (this project's VM
sets OPENBLAS_CORETYPE=Haswell for every process, on hosts with AVX-512), unless the caller
asks to keep it (BRISK_KEEP_CORETYPE=1). The CPU and OpenBLAS are stood in for, so the test
means the same on every machine.

python_with_torch: the comparisons run PyTorch's side with the Python that runs them if it
has torch, else with Debian's /usr/bin/python3 if that has it (a pyenv or virtual
environment's Python often has not), else stop at once with a message that says so, before
any run. Which interpreter can import torch is stood in for.
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


class Ran:
    def __init__(self, code):
        self.returncode = code


def pick(me, with_torch):
    """What python_with_torch picks when this process runs as `me` and only the interpreters
    in with_torch can import torch (None: it stopped, with its message)."""
    torch_settings.subprocess.run = lambda cmd, **kw: Ran(0 if cmd[0] in with_torch else 1)
    saved, torch_settings.sys.executable = sys.executable, me
    try:
        return torch_settings.python_with_torch("compare_test"), None
    except SystemExit as e:
        return None, str(e)
    finally:
        torch_settings.sys.executable = saved


real_run = torch_settings.subprocess.run
deb = "/usr/bin/python3"
me = "/bin/sh"  # stands in for a Python without torch: it exists (os.access passes), never runs
got = [pick(me, {me}), pick(me, {deb}), pick(me, set())]
torch_settings.subprocess.run = real_run
if got[0][0] != me:
    print("its own Python has torch: picked %s" % (got[0],)); fails += 1
if os.access(deb, os.X_OK) and me != deb and got[1][0] != deb:
    print("only %s has torch: picked %s" % (deb, got[1],)); fails += 1
if got[2][0] is not None or "compare_test" not in got[2][1] or me not in got[2][1] or \
        "python3-torch" not in got[2][1]:
    print("no Python has torch: %s" % (got[2],)); fails += 1
print("torch_settings: %s" % ("ok" if not fails else "%d failures" % fails))
sys.exit(1 if fails else 0)
