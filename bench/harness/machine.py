"""The machine description and the core layout (which process runs on which cores)."""

import os
import platform
import subprocess
import time


class Layout:
    """Cores for the proxy under test, the echo backend and h2load (taskset lists), and the
    proxy's workers (nginx `worker_processes`, nghttpx `workers`, esprit `--worker-threads`).

    `name`: pinned, sidecar or two-core (see LAYOUTS). `profiles`: the load profiles run in it.
    """

    def __init__(self, proxy, backend, loadgen, description, name="pinned", threads=None,
                 profiles=("saturation", "rate", "serial")):
        self.name = name
        self.proxy = proxy
        self.backend = backend
        self.loadgen = loadgen
        self.proxy_threads = threads or len(_cpu_list(proxy))
        self.description = description
        self.profiles = tuple(profiles)

    def as_dict(self):
        return {"name": self.name, "proxy": self.proxy, "backend": self.backend,
                "loadgen": self.loadgen, "proxy_threads": self.proxy_threads,
                "description": self.description, "profiles": list(self.profiles)}


# The layouts a run can measure, in order; `--layout` picks some. What each stands for:
#   pinned:   the proxy alone on a core; backend and h2load on the other (the proxy's cost alone)
#   sidecar:  the proxy and the backend share one core, h2load on the other (ESP as a sidecar:
#             what the proxy takes from the service it sits beside)
#   two-core: no pinning within two cores, load generator included; the proxy with two workers
#             (and esprit with one, for its own scaling)
LAYOUTS = ("pinned", "sidecar", "two-core")


def _cpu_list(spec):
    cpus = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus += list(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def choose_layout():
    """The pinned layout. BENCH_PROXY_CPUS / BENCH_BACKEND_CPUS / BENCH_LOADGEN_CPUS override
    its default."""
    n = len(os.sched_getaffinity(0))
    if n >= 4:
        default = ("0-%d" % (n // 2 - 1), str(n // 2), "%d-%d" % (n // 2 + 1, n - 1))
    elif n == 3:
        default = ("0", "1", "2")
    elif n == 2:
        default = ("0", "1", "1")
    else:
        default = ("0", "0", "0")
    proxy = os.environ.get("BENCH_PROXY_CPUS", default[0])
    backend = os.environ.get("BENCH_BACKEND_CPUS", default[1])
    loadgen = os.environ.get("BENCH_LOADGEN_CPUS", default[2])
    threads = len(_cpu_list(proxy))
    description = (
        "proxy on cores %s (%d worker%s: nginx `worker_processes`, nghttpx `workers`, esprit "
        "`--worker-threads`), echo backend on %s, h2load (one thread) on %s."
        % (proxy, threads, "" if threads == 1 else "s", backend, loadgen)
    )
    if n == 2 and (proxy, backend, loadgen) == default:
        description += (
            " The proxy gets a core of its own, so what is compared is the proxy and nothing "
            "else competes with it; h2load and the backend share the other core, which caps "
            "saturation throughput for every row alike."
        )
    return Layout(proxy, backend, loadgen, description)


def available_layouts(cpus=None):
    """Every layout this machine allows (`cpus`: how many cores, default this process's
    affinity): the sidecar and two-core layouts need two cores."""
    n = cpus or len(os.sched_getaffinity(0))
    out = [choose_layout()]
    if n < 2:
        return out
    out.append(Layout(
        "0", "0", "1",
        "sidecar: proxy (1 worker) and echo backend share core 0, h2load (one thread) on core 1. "
        "As ESP runs beside its service: every cycle the proxy spends is taken from the backend.",
        name="sidecar", threads=1, profiles=("saturation", "rate")))
    out.append(Layout(
        "0-1", "0-1", "0-1",
        "two cores, no pinning: proxy, echo backend and h2load all free to run on cores 0-1; "
        "the proxy with 2 workers (nghttpx `workers=2`, esprit `--worker-threads 2`) and esprit "
        "also with one, for its own scaling.",
        name="two-core", threads=2, profiles=("saturation",)))
    return out


def _first_line(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "%s: not found" % argv[0]
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "%s: no version" % argv[0]


def describe():
    models, mhz = [], ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                models.append(line.split(":", 1)[1].strip())
            elif line.startswith("cpu MHz") and not mhz:
                mhz = line.split(":", 1)[1].strip()
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = models[0] if models else platform.processor()
    return {
        "cpu": "%d × %s (%s MHz, /proc/cpuinfo)" % (len(models), model, mhz),
        "kernel": "%s %s %s" % (platform.system(), platform.release(), platform.machine()),
        "memory": "%.1f GiB RAM" % (mem_kib / 1024 / 1024),
        "tools": [
            _first_line(["h2load", "--version"]),
            _first_line(["nginx", "-v"]),
            _first_line(["nghttpx", "--version"]),
            "Python %s" % platform.python_version(),
        ],
    }


def revision(repo_dir):
    """`git describe`-like id of the tree measured (read-only git commands)."""
    try:
        rev = subprocess.run(["git", "-C", repo_dir, "rev-parse", "--short", "HEAD"],
                             capture_output=True, timeout=10).stdout.decode().strip()
        dirty = subprocess.run(["git", "-C", repo_dir, "status", "--porcelain", "--",
                                "crates", "Cargo.toml", "Cargo.lock"],
                               capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (rev or "unknown") + ("+modified" if dirty else "")


def quietness():
    """The 1/5/15-minute load averages and how many compilers run, when the run starts (a busy
    machine skews every row; the README asks for a run with load < 0.5 and no rustc)."""
    with open("/proc/loadavg") as f:
        loads = [float(x) for x in f.read().split()[:3]]
    busy = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/comm" % entry) as comm:
                    busy += comm.read().strip() in ("rustc", "cargo", "cc", "ld")
            except OSError:
                continue
    return {"load_1m": loads[0], "load_5m": loads[1], "load_15m": loads[2],
            "compilers_running": busy}


def wait_quiet(max_s, load_below=0.5, poll_s=10):
    """Waits up to `max_s` for a 1-minute load average below `load_below` with no compiler
    running (our own build just before a run raises the load for a minute or two). Returns
    the seconds waited; the run goes ahead either way, and the report shows the load."""
    start = time.monotonic()
    while time.monotonic() - start < max_s:
        q = quietness()
        if q["load_1m"] < load_below and not q["compilers_running"]:
            break
        time.sleep(poll_s)
    return time.monotonic() - start
