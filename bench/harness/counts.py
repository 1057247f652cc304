"""Per-call counts of the proxy's processes from `perf stat -p`: syscalls, context switches and
instructions (user and kernel) during a measured run, so that a change in CPU per call comes
with its explanation (more wake-ups, more syscalls, or more work per call).

Where perf is missing, or the kernel refuses (perf_event_paranoid, a container without the
syscall tracepoint) or the machine has no hardware counters (most VMs: instructions read
`<not supported>`), the count is None and the report shows "—" with the reason.
"""

import os
import shutil
import signal
import subprocess
import time

EVENTS = ("raw_syscalls:sys_enter", "context-switches", "instructions:u", "instructions:k")
# event -> key of the per-call figure in a profile's measurements
KEYS = {"raw_syscalls:sys_enter": "syscalls_per_call",
        "context-switches": "context_switches_per_call",
        "instructions:u": "instructions_u_per_call",
        "instructions:k": "instructions_k_per_call"}


class PerfStat:
    """`perf stat -x , -e EVENTS -p PIDS` from start() until stop(); counts or None per event."""

    def __init__(self, pids, out_path):
        self.out_path = out_path
        self.proc = None
        self.note = None
        if not shutil.which("perf"):
            self.note = "perf not installed"
            return
        try:
            self.proc = subprocess.Popen(
                ["perf", "stat", "-x", ",", "-o", out_path, "-e", ",".join(EVENTS),
                 "-p", ",".join(str(p) for p in pids)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as err:
            self.note = "perf did not start: %s" % err
            return
        # perf attaches within milliseconds; a refusal makes it exit at once.
        time.sleep(0.1)
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
            self.note = "perf refused: %s" % (err[0] if err else "exit %d" % self.proc.returncode)
            self.proc = None

    def stop(self):
        """{event: count or None}; the reason of a missing count is in self.note."""
        if not self.proc:
            return {event: None for event in EVENTS}
        self.proc.send_signal(signal.SIGINT)  # perf stat prints its counts and exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            counts = parse(self.out_path)
        except OSError:
            counts = {}
        missing = [e for e in EVENTS if counts.get(e) is None]
        if missing:
            self.note = "not counted here: %s" % ", ".join(missing)
        return {event: counts.get(event) for event in EVENTS}


def parse(path):
    """{event: count} from `perf stat -x ,` output; unsupported or uncounted events are left
    out. Counts of several PIDs (nghttpx's processes) are already summed by perf."""
    counts = {}
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) < 3 or line.startswith("#"):
                continue
            try:
                counts[fields[2]] = counts.get(fields[2], 0.0) + float(fields[0])
            except ValueError:
                continue  # <not supported> / <not counted>
    return counts


def per_call(counts, calls):
    """{syscalls_per_call, ...}: each count / calls, None where not counted."""
    return {KEYS[e]: (counts.get(e) / calls if counts.get(e) is not None and calls else None)
            for e in EVENTS}


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
