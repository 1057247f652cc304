"""Starting pinned processes and reading their CPU time and memory from /proc."""

import os
import signal
import socket
import subprocess
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class HarnessError(Exception):
    """A set-up could not be measured; the run fails."""


def free_port():
    """A port the kernel reports free now (a later bind could race; loopback-only, short window)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError("exited with status %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError("not listening on port %d after %.0f s" % (port, timeout))


class Proc:
    """A child process started under `taskset -c CPUS`, with its output in the work dir."""

    def __init__(self, name, argv, cpus, workdir, env=None):
        self.name = name
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        full_env = dict(os.environ)
        for key, value in (env or {}).items():
            # None: the variable is removed (esprit's default log when RUST_LOG is unset).
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        self.argv = ["taskset", "-c", cpus] + list(argv)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # A new session, so stopping it never signals the harness.
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=err, env=full_env, start_new_session=True
            )
        self.pid = self.popen.pid

    def first_stdout_line(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.stdout_path, "r", errors="replace") as out:
                line = out.readline()
            if line.endswith("\n"):
                return line.strip()
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise HarnessError("%s printed no address: %s" % (self.name, self.stderr_tail()))

    def stderr_tail(self, lines=5):
        try:
            with open(self.stderr_path, "r", errors="replace") as err:
                return " | ".join(err.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self):
        if self.popen.poll() is not None:
            raise HarnessError(
                "%s exited with status %s: %s"
                % (self.name, self.popen.returncode, self.stderr_tail())
            )

    def tree(self):
        """The PIDs of the process and all its descendants (nginx/nghttpx workers)."""
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    fields = _stat_fields(stat.read())
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(children.get(pid, []))
        return pids

    def pids(self):
        """The live PIDs of the tree (for `perf stat -p`)."""
        return [pid for pid in self.tree() if os.path.exists("/proc/%d" % pid)]

    def cpu_seconds(self):
        """utime + stime of the whole tree (every thread, live or exited), in seconds."""
        ticks = 0
        for pid in self.tree():
            try:
                with open("/proc/%d/stat" % pid) as stat:
                    fields = _stat_fields(stat.read())
            except OSError:
                continue
            # Fields 14 and 15 of proc(5), counting from 1: utime and stime in clock ticks.
            ticks += int(fields[11]) + int(fields[12])
        return ticks / CLOCK_TICKS

    def memory_kib(self):
        """(VmRSS, VmHWM) summed over the tree, KiB. Pages shared between processes (nginx
        master and workers) count once per process, as `ps` shows them."""
        rss = hwm = 0
        for pid in self.tree():
            try:
                with open("/proc/%d/status" % pid) as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            rss += int(line.split()[1])
                        elif line.startswith("VmHWM:"):
                            hwm += int(line.split()[1])
            except OSError:
                continue
        return rss, hwm

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


def _stat_fields(text):
    """/proc/PID/stat after the command name (which may contain spaces): field 3 onwards."""
    return text[text.rindex(")") + 2 :].split()
