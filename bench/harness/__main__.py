"""The benchmark driver: `python3 -m harness --bin-dir DIR [--quick]` (bench/run.sh calls it).

Starts each set-up on loopback, proves it answers gRPC calls, measures three load profiles and
memory, and writes bench/results/latest.{json,md}. Exits 1 if any set-up could not be measured
or any call failed: such a run is an error, not a result.
"""

import argparse
import datetime
import os
import shutil
import sys
import tempfile

from . import load as h2
from . import creds, machine, report, setups, targets, wire
from .procs import HarnessError


class Context:
    def __init__(self, bins, workdir, bench_dir, layout):
        self.bins = bins
        self.workdir = workdir
        self.bench_dir = bench_dir
        self.repo_dir = os.path.dirname(bench_dir)
        self.layout = layout
        self.tag = ""  # the set-up being measured: names its processes' output files
        self.creds = None
        self.pool_size = 0
        self.wrapper = []  # a command esprit runs under (harness.ab: valgrind)
        self.start_timeout = 15.0


def profiles(quick):
    """(name, about, Load sized later). Full runs: about 10 s each; quick runs: about 0.3 s."""
    secs = 0.3 if quick else 10
    return [
        ("saturation", "as many calls as the set-up completes (16 connections x 10 streams)",
         h2.Load(16, 10, duration_s=secs)),
        ("rate", "a fixed moderate rate, 5 000 calls/s, for latency under load",
         h2.Load(10, 1, duration_s=secs, rps=500)),
        ("serial", "one call at a time on one connection, the latency floor",
         h2.Load(1, 1, duration_s=secs)),
    ]


def calibration(load, quick):
    """The warm-up run before a profile; its rate sizes the measured run."""
    if load.rps:
        return load.sized(int(load.rps * load.clients * (0.1 if quick else 1.0)))
    per_stream, floor = (10, 300) if quick else (200, 5000)
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

    def __init__(self, workdir, token, api_key, sleep_ms=0, pool=None):
        self.pool = pool
        self.headers = wire.request_headers(None if pool else token, api_key)
        self.header_args = wire.header_args(self.headers)
        self.body = wire.grpc_frame(wire.echo_request(sleep_ms=sleep_ms))
        self.body_path = os.path.join(workdir, "request-sleep%d.bin" % sleep_ms)
        with open(self.body_path, "wb") as out:
            out.write(self.body)

    def targets(self, port, workdir, name):
        """(URL of the traced call, what h2load is given instead of a URL)."""
        base = "http://127.0.0.1:%d" % port
        if not self.pool:
            url = base + wire.METHOD_PATH
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
    return Call(ctx.workdir, ctx.creds.token, ctx.creds.api_key, sleep_ms=sleep_ms, pool=pool)


def measure(ctx, setup, runs, quick):
    """One set-up through every profile. Returns its row (with `error` set on failure)."""
    row = {"name": setup.name, "label": setup.label, "peer": setup.peer, "profiles": {}}
    backend = proxy = None
    try:
        ctx.tag = setup.name
        call = call_for(ctx, setup)
        if setup.pool:
            row["pool"] = {"algorithm": setup.pool, "tokens": ctx.pool_size,
                           "path_bytes": len(wire.pool_path(_first_line(call.pool)))}
        backend, backend_port = setups.start_backend(ctx)
        proxy, port = setup.start(ctx, backend_port)
        trace_url, url = call.targets(port, ctx.workdir, setup.name)
        size = h2.trace_call(trace_url, call.header_args, call.body_path)
        row["response_data_bytes"] = size
        if proxy:
            row["idle_rss_kib"] = proxy.memory_kib()[0]
        row["backend_idle_rss_kib"] = backend.memory_kib()[0]
        log = os.path.join(ctx.workdir, setup.name + ".log")
        verified = 0
        for name, _about, load in runs:
            # Warm-up (connections, allocator, caches), verified then discarded; for closed-loop
            # profiles its rate sizes the measured run to last about load.duration_s.
            warm = _run(ctx, calibration(load, quick), url, call, size, log, proxy, backend)
            verified += warm["calls"]
            rate = load.rps * load.clients if load.rps else warm["calls_per_s"]
            m = _run(ctx, load.sized(int(rate * load.duration_s)), url, call, size, log, proxy,
                     backend)
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


def _run(ctx, load, url, call, size, log, proxy, backend):
    h2.remove(log)
    cpu0 = proxy.cpu_seconds() if proxy else None
    bcpu0 = backend.cpu_seconds()
    s = h2.run_h2load(load, url, call.header_args, call.body_path, log, ctx.layout.loadgen)
    cpu1 = proxy.cpu_seconds() if proxy else None
    bcpu1 = backend.cpu_seconds()
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
    }


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
        size = h2.trace_call(trace_url, call.header_args, call.body_path)
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
        row.update({
            "calls": s["total"],
            "in_flight": rate * (sum(lat) / len(lat)) / 1e6,
            "proxy_max_rss_kib": peaks["proxy"] if proxy else None,
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


def _measure_all(ctx, result, runs, only, quick):
    """Every selected set-up into `result`; True if any failed."""
    failed = False
    conc_rows, conc_desc = [], None
    for setup in setups.all_setups():
        if only and setup.name not in only:
            continue
        if not setup.enabled:
            result["setups"].append({"name": setup.name, "label": setup.label,
                                     "peer": setup.peer, "disabled": setup.why_disabled})
            continue
        print("== %s" % setup.label, file=sys.stderr, flush=True)
        row = measure(ctx, setup, runs, quick)
        result["setups"].append(row)
        if row.get("error"):
            failed = True
            print("   ERROR: %s" % row["error"], file=sys.stderr, flush=True)
        else:
            for name, m in row["profiles"].items():
                print("   %-10s %9.0f calls/s  p50 %6d µs  p99 %6d µs  proxy CPU %s µs/call"
                      % (name, m["calls_per_s"], m["p50_us"], m["p99_us"],
                         "%.1f" % m["proxy_cpu_us_per_call"]
                         if m["proxy_cpu_us_per_call"] is not None else "—"),
                      file=sys.stderr, flush=True)
        if setup.many_streams:
            crow, conc_desc, sleep_ms = concurrency(ctx, setup, quick)
            conc_rows.append(crow)
            if crow.get("error"):
                failed = True
                print("   ERROR (concurrency): %s" % crow["error"], file=sys.stderr, flush=True)
            else:
                print("   %d calls, %.0f in flight, proxy max RSS %s KiB"
                      % (crow["calls"], crow["in_flight"], crow["proxy_max_rss_kib"]),
                      file=sys.stderr, flush=True)
    if conc_rows:
        result["concurrency"] = {
            "load": conc_desc, "sleep_ms": sleep_ms, "rows": conc_rows,
            "left_out": [s.label for s in setups.all_setups()
                         if s.enabled and not s.many_streams and (not only or s.name in only)],
        }
        for crow in conc_rows:
            if crow.get("error"):
                next(r for r in result["setups"] if r["name"] == crow["name"]).setdefault(
                    "error", "concurrency run: " + crow["error"])

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

    workdir = tempfile.mkdtemp(prefix="esprit-bench-")
    layout = machine.choose_layout()
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
        "call": {"path": wire.METHOD_PATH, "body_bytes": len(call.body),
                 "header_names": [name for name, _ in call.headers],
                 "authorization_bytes": len(dict(call.headers)["authorization"]),
                 "api_key_bytes": len(ctx.creds.api_key),
                 "header_bytes": sum(len(n) + len(v) for n, v in call.headers)},
        "profiles": [{"name": n, "about": a, "load": l.describe()} for n, a, l in runs],
        "setups": [],
    }
    try:
        failed = _measure_all(ctx, result, runs, only, args.quick)
    finally:
        ctx.creds.stop()
    result["minting_s"] = ctx.creds.mint_seconds
    if args.criterion_dir:
        result["criterion"] = targets.read_criterion(args.criterion_dir,
                                                      args.criterion_since)
    result["targets"] = targets.evaluate(result)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
