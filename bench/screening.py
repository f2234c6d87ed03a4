"""How much CPU other processes used while a benchmark ran: the scripts in bench/ run each
round through run_screened and screen out (run again) rounds that shared the machine."""
import os
import resource
import subprocess
import sys
import time


def cpu_busy():
    """Ticks the whole machine spent busy so far (all but idle and iowait), and ticks/s."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], os.sysconf("SC_CLK_TCK")


def run_screened(cmd, env=None):
    """Runs cmd; returns (its stdout, the cores other processes used meanwhile: the machine's
    busy time less cmd's own CPU time, over the wall time). Exits naming cmd when it fails."""
    b0, hz = cpu_busy()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("%s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode, p.stderr))
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b1, _ = cpu_busy()
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return p.stdout, max(0.0, (b1 - b0) / hz - own) / wall
