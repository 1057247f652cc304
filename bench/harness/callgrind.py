"""User-space instructions per call, counted by valgrind's callgrind.

Callgrind counts every instruction a process executes (all threads), so the figure repeats to
about 0.1 % for the same binary and load, however busy the machine is, and it works on virtual
machines without hardware counters (where `perf stat` reads instructions as `<not supported>`).
It explains a CPU-time ratio: more instructions per call (work), or the same instructions and
more kernel time (wake-ups, syscalls).

How a count is taken: the proxy starts under `valgrind --tool=callgrind` (a worker process it
starts, as nghttpx does, is counted too: one dump file per process); after a verified warm-up the
counters of every process of the proxy are zeroed (`callgrind_control -z PID`), h2load makes a
fixed number of calls, the counters are dumped (`callgrind_control -d PID`) and the dumps'
totals are summed and divided by the calls. Two loads: 16 connections x 10 streams (calls
batched per wake-up) and one call at a time (a wake-up per call).
"""

import itertools
import os
import shutil
import subprocess

from . import load as h2
from .procs import HarnessError

# (name, h2load load, measured calls); the warm-up makes a quarter as many.
LOADS = [("16x10", h2.Load(16, 10), 2000), ("serial", h2.Load(1, 1), 500)]
QUICK_LOADS = [("16x10", h2.Load(16, 10), 320), ("serial", h2.Load(1, 1), 100)]
# Under callgrind a proxy starts tens of times slower.
START_TIMEOUT = 120.0
TOOLS = ("valgrind", "callgrind_control")

_RUNS = itertools.count(1)


def missing_tool():
    """The first tool this needs that is not installed, or None."""
    return next((t for t in TOOLS if not shutil.which(t)), None)


def wrapper(workdir, tag):
    """(the command a proxy runs under, the prefix of its dump files). One prefix per process
    start: callgrind numbers a process's dumps from 1, so a later start must not find an earlier
    one's dumps beside its own."""
    prefix = os.path.join(workdir, "%s-%d.callgrind" % (tag, next(_RUNS)))
    # --trace-children: nghttpx starts its worker by exec.
    return (["valgrind", "--tool=callgrind", "--trace-children=yes",
             "--callgrind-out-file=" + prefix + ".%p"], prefix)


def count(proxy, prefix, loads, run):
    """{load name: instructions per call} of `proxy` (a procs.Proc started under `wrapper`'s
    command). `run(load, calls)` makes one verified h2load run and returns its summary."""
    result = {}
    for name, load, calls in loads:
        run(load, max(calls // 4, load.clients))  # warm-up
        pids = proxy.pids()
        _control(pids, "-z")
        summary = run(load, calls)
        _control(pids, "-d")
        result[name] = _dumped(prefix, pids) / summary["total"]
    proxy.check_alive()
    return result


def _control(pids, flag):
    for pid in pids:
        try:
            proc = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True,
                                  timeout=60)
        except subprocess.TimeoutExpired:
            raise HarnessError("callgrind_control %s %d did not answer in 60 s" % (flag, pid))
        out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        # It exits 0 also when it finds no callgrind task with that PID.
        if proc.returncode != 0 or "OK." not in out:
            raise HarnessError("callgrind_control %s %d failed: %s" % (flag, pid, out[-300:]))


def _dumped(prefix, pids):
    """The summed totals of each process's last dump."""
    directory, base = os.path.split(prefix)
    total = 0
    for pid in pids:
        stem = "%s.%d." % (base, pid)
        dumps = [p for p in os.listdir(directory)
                 if p.startswith(stem) and p[len(stem):].isdigit()]
        if not dumps:
            raise HarnessError("callgrind wrote no dump for process %d" % pid)
        last = max(dumps, key=lambda p: int(p[len(stem):]))
        total += _total(os.path.join(directory, last))
    return total


def _total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise HarnessError("no total in the callgrind dump %s" % path)
