"""What 'PyTorch at its best' means in Brisk's benchmarks, shared by the comparison scripts.

PyTorch on the CPU has two thread pools that matter for an MLP: its own intra-op pool
(torch.set_num_threads) and OpenBLAS's (OPENBLAS_NUM_THREADS, read when the library loads),
and libgomp's spin-wait (OMP_WAIT_POLICY) decides whether idle threads burn a core. On 2
cores its best is often 1 intra-op thread with 2 OpenBLAS threads. So a fair comparison tries
every sensible combination and reports the best with the setting that won.

OpenBLAS's kernel: Debian 12's OpenBLAS 0.3.21 does not recognise some recent CPUs and falls
back to slow SSE3 kernels; when the kernel it would run ranks below what the CPU's flags
support, PyTorch's side is given OPENBLAS_CORETYPE set to the best one. That includes a value
already in the environment: this project's VM sets OPENBLAS_CORETYPE=Haswell for every
process, which on its AVX-512 hosts cost PyTorch a quarter of its speed. A caller who wants a
kernel kept sets BRISK_KEEP_CORETYPE=1.
"""
import ctypes
import os
import subprocess
import sys

# OpenBLAS kernel names by the instruction set they use, slowest first.
KERNEL_ORDER = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge",
                "Haswell", "SkylakeX", "Cooperlake", "SapphireRapids"]


def python_with_torch(prog):
    """The Python that runs PyTorch's side: this one if it can import torch, else Debian's
    /usr/bin/python3 if that can (a virtual environment or pyenv often has no torch); exits
    with a message naming both when neither can."""
    tried = []
    for py in [sys.executable, "/usr/bin/python3"]:
        if not py or py in tried or not os.access(py, os.X_OK):
            continue
        tried.append(py)
        if subprocess.run([py, "-c", "import torch"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            return py
    sys.exit("%s: PyTorch's side needs a Python that can import torch, and none here can "
             "(tried: %s; on Debian: apt-get install python3-torch)"
             % (prog, ", ".join(tried) or "no Python found"))


def kernel_rank(name):
    """Rank of an OpenBLAS kernel name; unknown names rank as good enough."""
    low = [k.lower() for k in KERNEL_ORDER]
    return low.index(name.lower()) if name.lower() in low else len(KERNEL_ORDER)


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def best_kernel_for_cpu():
    """The best OpenBLAS kernel this CPU's flags support."""
    f = cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= f:
        return "Cooperlake" if "avx512_bf16" in f else "SkylakeX"
    if {"avx2", "fma"} <= f:
        return "Haswell"
    if "avx" in f:
        return "Sandybridge"
    return "Prescott"


def openblas_kernel():
    """The kernel OpenBLAS picks by itself in a fresh load (None when it is not OpenBLAS)."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            fn = ctypes.CDLL(name).openblas_get_corename
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        return fn().decode()
    return None


def torch_blas_kernel(torch):
    """What runs PyTorch's dense products in this process: the OpenBLAS kernel it loaded, or
    MKL for builds that bundle it (pip wheels; OPENBLAS_* settings do not apply to those)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if ".so" in line}
    except OSError:
        libs = set()
    for path in sorted(libs):
        if "openblas" in os.path.basename(path) or os.path.basename(path).startswith("libblas"):
            try:
                fn = ctypes.CDLL(path).openblas_get_corename
            except (OSError, AttributeError):
                continue
            fn.restype = ctypes.c_char_p
            return "OpenBLAS " + fn().decode()
    if torch.backends.mkl.is_available():
        return "MKL (bundled with PyTorch; OpenBLAS settings do not apply)"
    return "unknown BLAS"


def coretype_env(env):
    """env with OPENBLAS_CORETYPE set when OpenBLAS would otherwise run a slower kernel (the
    one it picks by itself, or the one env names), unless env has BRISK_KEEP_CORETYPE=1."""
    env = dict(env)
    if env.get("BRISK_KEEP_CORETYPE") == "1":
        return env
    own = env.get("OPENBLAS_CORETYPE") or openblas_kernel()
    best = best_kernel_for_cpu()
    if own is not None and kernel_rank(own) < kernel_rank(best):
        env["OPENBLAS_CORETYPE"] = best
    return env


def thread_counts(n):
    """Sensible thread counts up to n: all of them up to 4, then powers of two and n."""
    if n <= 4:
        return list(range(1, n + 1))
    out, t = [], 1
    while t < n:
        out.append(t)
        t *= 2
    return out + [n]


def settings(max_threads):
    """(intra-op threads, OpenBLAS threads, OMP_WAIT_POLICY or None) to try on max_threads."""
    ts = thread_counts(max_threads)
    return [(i, o, w) for i in ts for o in ts for w in (None, "PASSIVE")]


def setting_env(env, openblas_threads, wait):
    env = dict(env)
    env["OPENBLAS_NUM_THREADS"] = str(openblas_threads)
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    else:
        env.pop("OMP_WAIT_POLICY", None)
    return env


def describe(setting):
    i, o, w = setting
    return "%d intra-op + %d OpenBLAS threads%s" % (i, o, ", OMP_WAIT_POLICY=" + w if w else "")
