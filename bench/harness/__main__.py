"""The benchmark driver: `python3 -m harness --bin-dir DIR [--quick]` (bench/run.sh calls it).

Starts each set-up on loopback, proves it answers gRPC calls, measures three load profiles and
memory, and writes bench/results/latest.{json,md}. Exits 1 if any set-up could not be measured
or any call failed: such a run is an error, not a result.
"""

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile

from . import load as h2
from . import callgrind, counts, creds, machine, report, setups, stats, targets, wire
from .procs import HarnessError


# Seconds a proxy has to listen after it starts (callgrind.START_TIMEOUT under callgrind).
START_TIMEOUT = 15.0


class Context:
    def __init__(self, bins, workdir, bench_dir, layout):
        self.bins = bins
        self.workdir = workdir
        self.bench_dir = bench_dir
        self.repo_dir = os.path.dirname(bench_dir)
        self.layout = layout
        self.round = 1
        self.perf_notes = set()  # why a perf count is missing ("—" in the report)
        self.tag = ""  # the set-up being measured: names its processes' output files
        self.creds = None
        self.pool_size = 0
        self.wrapper = []  # a command the proxy runs under (callgrind), else empty
        self.start_timeout = START_TIMEOUT


# Seconds each measured run is sized to last, per profile: (full, quick). A full run repeats
# every row ROUNDS times; quick runs one round. Quick's saturation run is the regression guard's
# (CPU time is read in 10 ms clock ticks: 1.5 s keeps that under a few % of the figure).
DURATIONS = {"saturation": (5, 1.5), "rate": (3, 0.2), "serial": (2, 0.2)}
ROUNDS = 3


def profiles(quick):
    """(name, about, Load sized later)."""
    secs = {name: d[1] if quick else d[0] for name, d in DURATIONS.items()}
    return [
        ("saturation", "as many calls as the set-up completes (16 connections x 10 streams)",
         h2.Load(16, 10, duration_s=secs["saturation"])),
        ("rate", "a fixed moderate rate, 5 000 calls/s, for latency under load",
         h2.Load(10, 1, duration_s=secs["rate"], rps=500)),
        ("serial", "one call at a time on one connection, the latency floor",
         h2.Load(1, 1, duration_s=secs["serial"])),
    ]


def calibration(load, quick):
    """The warm-up run before a profile; its rate sizes the measured run."""
    if load.rps:
        return load.sized(int(load.rps * load.clients * (0.1 if quick else 1.0)))
    per_stream, floor = (10, 300) if quick else (200, 2000)
    return load.sized(max(load.clients * load.streams * per_stream, floor))


def concurrency_load(quick):
    """(Load, sleep_ms): 10 000 calls in flight at once (100 connections x 100 streams)."""
    if quick:
        return h2.Load(10, 100, requests=2000), 200
    return h2.Load(100, 100, requests=20000), 1000


class Call:
    """The files and headers of a call, written once into the work dir.

    `pool`: a file of tokens (rows 6). Such calls carry no `authorization` header; each carries
    one token of the pool in its URI's `access_token` parameter, h2load cycling through them.
    """

    def __init__(self, workdir, token, api_key, sleep_ms=0, pool=None, kind="grpc"):
        self.pool = pool
        self.kind = kind
        self.headers = wire.request_headers(None if pool else token, api_key, kind=kind)
        self.header_args = wire.header_args(self.headers)
        self.body = wire.grpc_frame(wire.echo_request(sleep_ms=sleep_ms))
        self.body_path = None
        if wire.has_body(kind):
            self.body_path = os.path.join(workdir, "request-sleep%d.bin" % sleep_ms)
            with open(self.body_path, "wb") as out:
                out.write(self.body)

    def targets(self, port, workdir, name):
        """(URL of the traced call, what h2load is given instead of a URL)."""
        base = "http://127.0.0.1:%d" % port
        if not self.pool:
            url = base + wire.call_path(self.kind)
            return url, url
        with open(self.pool) as f:
            tokens = f.read().split()
        # h2load takes scheme, host and port from the first URI only.
        uris = os.path.join(workdir, name + "-uris.txt")
        with open(uris, "w") as out:
            out.write(base + "".join(wire.pool_path(t) + "\n" for t in tokens))
        return base + wire.pool_path(tokens[0]), ["-i", uris]


def call_for(ctx, setup, sleep_ms=0):
    pool = ctx.creds.pool(setup.pool, ctx.pool_size) if setup.pool else None
    return Call(ctx.workdir, ctx.creds.token, ctx.creds.api_key, sleep_ms=sleep_ms, pool=pool,
                kind=setup.kind)


def measure(ctx, setup, runs, quick):
    """One set-up through every profile of the context's layout, once (one round). Returns its
    row (with `error` set on failure)."""
    row = {"name": setup.name, "label": setup.label, "peer": setup.peer, "profiles": {}}
    runs = [r for r in runs if r[0] in ctx.layout.profiles]
    backend = proxy = None
    try:
        ctx.tag = "%s-%s-r%d" % (ctx.layout.name, setup.name, ctx.round)
        call = call_for(ctx, setup)
        if setup.pool:
            row["pool"] = {"algorithm": setup.pool, "tokens": ctx.pool_size,
                           "path_bytes": len(wire.pool_path(_first_line(call.pool)))}
        backend, backend_port = setups.start_backend(ctx)
        proxy, port = setup.start(ctx, backend_port)
        trace_url, url = call.targets(port, ctx.workdir, setup.name)
        size = h2.trace_call(trace_url, call.header_args, call.body_path, kind=call.kind)
        row["response_data_bytes"] = size
        if proxy:
            row["idle_rss_kib"] = proxy.memory_kib()[0]
        row["backend_idle_rss_kib"] = backend.memory_kib()[0]
        log = os.path.join(ctx.workdir, ctx.tag + ".log")
        verified = 0
        for name, _about, load in runs:
            # Warm-up (connections, allocator, caches), verified then discarded; for closed-loop
            # profiles its rate sizes the measured run to last about load.duration_s.
            warm = _run(ctx, calibration(load, quick), url, call, size, log, proxy, backend)
            verified += warm["calls"]
            rate = load.rps * load.clients if load.rps else warm["calls_per_s"]
            m = _run(ctx, load.sized(int(rate * load.duration_s)), url, call, size, log, proxy,
                     backend, count=True)
            verified += m["calls"]
            row["profiles"][name] = m
        if proxy:
            proxy.check_alive()
            row["peak_rss_kib"] = proxy.memory_kib()[1]
        backend.check_alive()
        row["backend_peak_rss_kib"] = backend.memory_kib()[1]
        row["calls_verified"] = verified
    except (HarnessError, OSError) as err:
        row["error"] = str(err)
        row["profiles"] = {}
    finally:
        for proc in (proxy, backend):
            if proc:
                proc.stop()
    return row


def _run(ctx, load, url, call, size, log, proxy, backend, count=False):
    """One verified h2load run; `count`: with `perf stat` on the proxy's processes."""
    h2.remove(log)
    perf = None
    if count and proxy:
        perf = counts.PerfStat(proxy.pids(), log + ".perf")
    cpu0 = proxy.cpu_seconds() if proxy else None
    bcpu0 = backend.cpu_seconds()
    s = h2.run_h2load(load, url, call.header_args, call.body_path, log, ctx.layout.loadgen)
    cpu1 = proxy.cpu_seconds() if proxy else None
    bcpu1 = backend.cpu_seconds()
    per_call = counts.per_call(perf.stop(), s["total"]) if perf else {}
    if perf and perf.note:
        ctx.perf_notes.add(perf.note)
    h2.verify(s, size)
    lat = h2.latencies_us(log)
    if len(lat) != s["total"]:
        raise HarnessError("h2load logged %d calls but counted %d" % (len(lat), s["total"]))
    calls = s["total"]
    return {
        "load": load.describe(),
        "calls": calls,
        "seconds": s["seconds"],
        "calls_per_s": calls / s["seconds"],
        "p50_us": h2.percentile(lat, 0.50),
        "p90_us": h2.percentile(lat, 0.90),
        "p99_us": h2.percentile(lat, 0.99),
        "mean_us": sum(lat) / len(lat),
        "max_us": lat[-1],
        "proxy_cpu_us_per_call": (cpu1 - cpu0) * 1e6 / calls if proxy else None,
        "backend_cpu_us_per_call": (bcpu1 - bcpu0) * 1e6 / calls,
        "data_bytes": s["bytes_data"],
        "header_bytes": s["bytes_headers"],
        **per_call,
    }


def instructions(ctx, setup, loads, tag):
    """{load name: user-space instructions per call} of `setup`'s proxy under callgrind
    (harness/callgrind.py); every run verified as in `measure`. Raises HarnessError."""
    ctx.tag = tag
    ctx.wrapper, prefix = callgrind.wrapper(ctx.workdir, tag)
    ctx.start_timeout = callgrind.START_TIMEOUT
    backend = proxy = None
    try:
        call = call_for(ctx, setup)
        backend, backend_port = setups.start_backend(ctx)
        proxy, port = setup.start(ctx, backend_port)
        trace_url, url = call.targets(port, ctx.workdir, tag)
        size = h2.trace_call(trace_url, call.header_args, call.body_path, kind=call.kind)
        log = os.path.join(ctx.workdir, tag + ".log")

        def run(load, calls):
            h2.remove(log)
            s = h2.run_h2load(load.sized(calls), url, call.header_args, call.body_path, log,
                              ctx.layout.loadgen)
            h2.verify(s, size)
            return s

        return callgrind.count(proxy, prefix, loads, run)
    finally:
        ctx.wrapper, ctx.start_timeout = [], START_TIMEOUT
        for proc in (proxy, backend):
            if proc:
                proc.stop()


# The rows counted by a quick run (CI): the regression guard's pair.
QUICK_CALLGRIND_ROWS = ("nghttpx", "esprit-jwt-rs256-hit")


def _count_instructions(ctx, result, only, quick, layouts):
    """Instructions per call of the selected esprit rows of the pinned layout and their
    references (quick: the guard's pair only) into result["instructions"]; True if any
    failed."""
    pinned = next((lay for lay in layouts if lay.name == "pinned"), None)
    if not pinned:
        return False
    tool = callgrind.missing_tool()
    if tool:
        result["instructions"] = {"skipped": "%s not installed" % tool}
        return False
    loads = callgrind.QUICK_LOADS if quick else callgrind.LOADS
    ctx.layout = pinned
    rows, failed = [], False
    # esprit's rows and the rows they are compared with (nginx, compared with nothing, is left
    # out: its workers drop root, and callgrind_control cannot reach them).
    refs = {s.guard for s in setups.all_setups() if s.guard}
    for layout, setup in _selected([pinned], only):
        if not setup.enabled or not (setup.esprit or setup.name in refs):
            continue
        if quick and setup.name not in QUICK_CALLGRIND_ROWS:
            continue
        print("== instructions (callgrind): %s" % setup.label, file=sys.stderr, flush=True)
        row = {"name": setup.name, "label": setup.label, "esprit": setup.esprit,
               "access_log": setup.access_log, "compare": setup.compare, "layout": layout.name}
        try:
            row["per_call"] = instructions(ctx, setup, loads, "callgrind-" + setup.name)
            print("   %s" % ", ".join("%s %.0f" % kv for kv in row["per_call"].items()),
                  file=sys.stderr, flush=True)
        except (HarnessError, OSError) as err:
            failed = True
            row["error"] = str(err)
            print("   ERROR: %s" % err, file=sys.stderr, flush=True)
        rows.append(row)
    result["instructions"] = {
        "loads": [{"name": n, "load": lo.sized(c).describe()} for n, lo, c in loads],
        "rows": rows,
    }
    return failed


def concurrency(ctx, setup, quick):
    """Memory with many calls in flight; the backend makes each call wait `sleep_ms`."""
    load, sleep_ms = concurrency_load(quick)
    row = {"name": setup.name, "label": setup.label}
    backend = proxy = None
    try:
        ctx.tag = setup.name + "-concurrency"
        call = call_for(ctx, setup, sleep_ms=sleep_ms)
        backend, backend_port = setups.start_backend(ctx)
        proxy, port = setup.start(ctx, backend_port)
        trace_url, url = call.targets(port, ctx.workdir, setup.name + "-concurrency")
        size = h2.trace_call(trace_url, call.header_args, call.body_path, kind=call.kind)
        idle = proxy.memory_kib()[0] if proxy else None
        peaks = {"proxy": 0, "backend": 0}

        def sample():
            if proxy:
                peaks["proxy"] = max(peaks["proxy"], proxy.memory_kib()[0])
            peaks["backend"] = max(peaks["backend"], backend.memory_kib()[0])

        log = os.path.join(ctx.workdir, setup.name + "-concurrency.log")
        s = h2.run_h2load(load, url, call.header_args, call.body_path, log, ctx.layout.loadgen,
                          sample=sample)
        h2.verify(s, size)
        lat = h2.latencies_us(log)
        rate = s["total"] / s["seconds"]
        in_flight = rate * (sum(lat) / len(lat)) / 1e6
        row.update({
            "calls": s["total"],
            "in_flight": in_flight,
            "proxy_idle_rss_kib": idle,
            "proxy_max_rss_kib": peaks["proxy"] if proxy else None,
            # What each call in flight holds: the RSS it added over idle, per call.
            "kib_per_stream": (peaks["proxy"] - idle) / in_flight if proxy and in_flight else None,
            "backend_max_rss_kib": peaks["backend"],
            "p50_us": h2.percentile(lat, 0.5),
            "max_us": lat[-1],
        })
        if proxy:
            proxy.check_alive()
    except (HarnessError, OSError) as err:
        row["error"] = str(err)
    finally:
        for proc in (proxy, backend):
            if proc:
                proc.stop()
    return row, load.describe(), sleep_ms


def _selected(layouts, only):
    """[(layout, setup)] in measuring order: layout by layout, rows in report order."""
    out = []
    for layout in layouts:
        for setup in setups.all_setups():
            if layout.name in setup.layouts and (not only or setup.name in only):
                out.append((layout, setup))
    return out


def _print_round(row):
    for name, m in row["profiles"].items():
        extra = ""
        if m.get("syscalls_per_call") is not None:
            extra = "  %.2f syscalls, %.3f cs /call" % (m["syscalls_per_call"],
                                                      m["context_switches_per_call"] or 0)
        print("   %-10s %9.0f calls/s  p50 %6d µs  p99 %6d µs  proxy CPU %s µs/call%s"
              % (name, m["calls_per_s"], m["p50_us"], m["p99_us"],
                 "%.1f" % m["proxy_cpu_us_per_call"]
                 if m["proxy_cpu_us_per_call"] is not None else "—", extra),
              file=sys.stderr, flush=True)


def _measure_all(ctx, result, runs, only, quick, layouts, rounds):
    """Every selected set-up into `result`, `rounds` times over (every row once per round, so
    a drift of the machine's load hits neighbouring rows alike); True if any failed."""
    failed = False
    selected = _selected(layouts, only)
    rows = {}
    for layout, setup in selected:
        row = {"layout": layout.name, "name": setup.name, "label": setup.label,
               "peer": setup.peer, "esprit": setup.esprit, "kind": setup.kind,
               "access_log": setup.access_log, "guard": setup.guard, "compare": setup.compare,
               "rounds": [], "calls_verified": 0}
        if not setup.enabled:
            row["disabled"] = setup.why_disabled
        rows[(layout.name, setup.name)] = row
        result["setups"].append(row)
    for rnd in range(rounds):
        ctx.round = rnd + 1
        for layout, setup in selected:
            row = rows[(layout.name, setup.name)]
            if row.get("disabled") or row.get("error"):
                continue
            ctx.layout = layout
            print("== round %d/%d, %s: %s" % (rnd + 1, rounds, layout.name, setup.label),
                  file=sys.stderr, flush=True)
            one = measure(ctx, setup, runs, quick)
            if one.get("error"):
                failed = True
                row["error"] = "round %d: %s" % (rnd + 1, one["error"])
                print("   ERROR: %s" % one["error"], file=sys.stderr, flush=True)
                continue
            _print_round(one)
            row["rounds"].append(one["profiles"])
            row["calls_verified"] += one.get("calls_verified", 0)
            row["response_data_bytes"] = one.get("response_data_bytes")
            for key in ("idle_rss_kib", "backend_idle_rss_kib"):
                if one.get(key):
                    row.setdefault(key + "_rounds", []).append(one[key])
            for key in ("peak_rss_kib", "backend_peak_rss_kib"):
                if one.get(key):
                    row[key] = max(row.get(key, 0), one[key])
    for row in rows.values():
        if row.get("error"):
            row["profiles"] = {}
            continue
        row["profiles"] = stats.aggregate(row["rounds"])
        for key in ("idle_rss_kib", "backend_idle_rss_kib"):
            if row.get(key + "_rounds"):
                row[key] = statistics.median(row[key + "_rounds"])

    # Memory with 10 000 calls in flight: once, in the pinned layout.
    conc_rows, conc_desc, sleep_ms = [], None, 0
    pinned = next((lay for lay in layouts if lay.name == "pinned"), None)
    for layout, setup in selected:
        if layout is not pinned or not setup.many_streams or not setup.enabled:
            continue
        ctx.layout = layout
        print("== many streams, %s: %s" % (layout.name, setup.label), file=sys.stderr, flush=True)
        crow, conc_desc, sleep_ms = concurrency(ctx, setup, quick)
        conc_rows.append(crow)
        if crow.get("error"):
            failed = True
            print("   ERROR (concurrency): %s" % crow["error"], file=sys.stderr, flush=True)
            rows[(layout.name, setup.name)].setdefault("error", "concurrency run: " + crow["error"])
        else:
            print("   %d calls, %.0f in flight, proxy max RSS %s KiB, %s KiB per stream"
                  % (crow["calls"], crow["in_flight"], crow["proxy_max_rss_kib"],
                     "%.1f" % crow["kib_per_stream"] if crow["kib_per_stream"] else "—"),
                  file=sys.stderr, flush=True)
    if conc_rows:
        result["concurrency"] = {
            "load": conc_desc, "sleep_ms": sleep_ms, "rows": conc_rows,
            "left_out": ["nginx grpc_pass"] if pinned and (not only or "nginx" in only) else [],
        }
    return failed


def _first_line(path):
    with open(path) as f:
        return f.readline().strip()


def main():
    parser = argparse.ArgumentParser(prog="bench/run.sh")
    parser.add_argument("--bin-dir", required=True, help="directory with esprit and echo-server")
    parser.add_argument("--quick", action="store_true", help="seconds in total (CI smoke run)")
    parser.add_argument("--only", default="", help="comma-separated set-up names")
    parser.add_argument("--results", help="output directory (default bench/results)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--command", default="bench/run.sh", help="recorded in the report")
    parser.add_argument("--python", help="the project's venv python (scripts/python-env.sh), "
                        "with PyJWT: mints the token pools")
    parser.add_argument("--pool-size", type=int,
                        help="tokens per pool (default 10 000; 1 000 with --quick)")
    parser.add_argument("--criterion-dir", help="CARGO_TARGET_DIR/criterion of a `cargo bench "
                        "-p esprit-authn --bench decision` run, read into the report")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long for a 1-minute load below 0.5 and no "
                        "compiler running")
    parser.add_argument("--criterion-since", type=float, default=0,
                        help="ignore criterion estimates older than this Unix time")
    parser.add_argument("--layout", default="",
                        help="comma-separated layouts (%s; default: all this machine allows)"
                        % ", ".join(machine.LAYOUTS))
    parser.add_argument("--no-callgrind", action="store_true",
                        help="skip the instructions-per-call runs under callgrind")
    parser.add_argument("--rounds", type=int,
                        help="times every row is measured (default %d; 1 with --quick)" % ROUNDS)
    args = parser.parse_args()

    bench_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # A quick run never overwrites the full run's results.
    results_dir = args.results or os.path.join(bench_dir, "results", "quick" if args.quick else "")
    bins = {name: os.path.join(args.bin_dir, name) for name in ("esprit", "echo-server")}
    for name in ("h2load", "nghttp", "nginx", "nghttpx", "taskset"):
        if not shutil.which(name):
            print("error: %s not found (bench/run.sh installs it)" % name, file=sys.stderr)
            return 1
    for path in bins.values():
        if not os.access(path, os.X_OK):
            print("error: %s is not an executable" % path, file=sys.stderr)
            return 1

    allowed = machine.available_layouts()
    wanted = [n for n in args.layout.split(",") if n]
    unknown = [n for n in wanted if n not in machine.LAYOUTS]
    if unknown:
        print("error: unknown layout %s (known: %s)" % (", ".join(unknown),
                                                        ", ".join(machine.LAYOUTS)),
              file=sys.stderr)
        return 2
    layouts = [lay for lay in allowed if not wanted or lay.name in wanted]
    skipped = [n for n in wanted if n not in [lay.name for lay in allowed]]
    if skipped:
        print("note: this machine does not allow layout %s (too few cores)" % ", ".join(skipped),
              file=sys.stderr)
    rounds = args.rounds or (1 if args.quick else ROUNDS)
    workdir = tempfile.mkdtemp(prefix="esprit-bench-")
    layout = allowed[0]  # pinned: where the key server and token minting run
    ctx = Context(bins, workdir, bench_dir, layout)
    ctx.pool_size = args.pool_size or (1000 if args.quick else 10000)
    runs = profiles(args.quick)
    only = set(filter(None, args.only.split(",")))
    waited = machine.wait_quiet(args.wait_quiet) if args.wait_quiet else 0
    quiet = machine.quietness()
    quiet["waited_s"] = round(waited)
    try:
        ctx.creds = creds.Credentials(bins["esprit"], args.python, workdir,
                                      layout.backend).create()
    except (HarnessError, OSError) as err:
        print("error: making the run's credentials: %s" % err, file=sys.stderr)
        return 1
    call = Call(workdir, ctx.creds.token, ctx.creds.api_key)
    result = {
        "mode": "quick" if args.quick else "full",
        "command": args.command,
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "esprit_revision": machine.revision(ctx.repo_dir),
        "machine": machine.describe(),
        "quiet_at_start": quiet,
        "layout": layout.as_dict(),
        "layouts": [lay.as_dict() for lay in layouts],
        "layouts_not_allowed": skipped,
        "rounds": rounds,
        "call": {"path": wire.METHOD_PATH, "body_bytes": len(call.body),
                 "header_names": [name for name, _ in call.headers],
                 "authorization_bytes": len(dict(call.headers)["authorization"]),
                 "api_key_bytes": len(ctx.creds.api_key),
                 "header_bytes": sum(len(n) + len(v) for n, v in call.headers)},
        "profiles": [{"name": n, "about": a, "load": l.describe()} for n, a, l in runs],
        "setups": [],
    }
    try:
        failed = _measure_all(ctx, result, runs, only, args.quick, layouts, rounds)
        if not args.no_callgrind:
            failed = _count_instructions(ctx, result, only, args.quick, layouts) or failed
    finally:
        ctx.creds.stop()
    result["minting_s"] = ctx.creds.mint_seconds
    result["perf_notes"] = sorted(ctx.perf_notes)
    if args.criterion_dir:
        result["criterion"] = targets.read_criterion(args.criterion_dir,
                                                      args.criterion_since)
    result["targets"] = targets.evaluate(result)
    result["guard"] = {"limit": targets.MAX_CPU_VS_PEER, "checks": targets.guard(result)}
    os.makedirs(results_dir, exist_ok=True)
    report.write_json(os.path.join(results_dir, "latest.json"), result)
    report.write_markdown(os.path.join(results_dir, "latest.md"), result)
    print("wrote %s/latest.{json,md}" % results_dir, file=sys.stderr)
    if args.keep_workdir:
        print("work dir kept: %s" % workdir, file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print("FAILED: some set-ups could not be measured or had failed calls", file=sys.stderr)
        return 1
    over = [c for c in result["guard"]["checks"] if not c["ok"]]
    for c in result["guard"]["checks"]:
        print("guard: %s/%s CPU per call %.2f× %s's (limit %.1f×)%s"
              % (c["layout"], c["name"], c["ratio"], c["ref"], targets.MAX_CPU_VS_PEER,
                 "" if c["ok"] else "  EXCEEDED"), file=sys.stderr)
    if over and args.quick:
        print("FAILED: the regression guard: esprit's CPU per call over %.1f× nghttpx's"
              % targets.MAX_CPU_VS_PEER, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
