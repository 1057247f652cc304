"""A/B of two esprit builds by counts that a busy machine does not move:

    python3 -m harness.ab --bin-dir NEW --compare-bin-dir OLD [--only A,B] [--rounds N] [--quick]

(`bench/run.sh --compare-bin-dir OLD` calls it with the build under test as NEW.)

Wall-clock throughput on a shared 2-core VM moves 5-10 % between runs; counts per call do not.
For each set-up (default: `esprit-open` and `esprit-jwt-rs256-hit`, started exactly as the main
benchmark starts them, with NEW's echo backend for both builds) and each build, alternating
which build goes first from round to round:

- user-space instructions per call under valgrind's callgrind, taken as the main benchmark takes
  them (harness/callgrind.py): repeatable to about 0.1 % however loaded the machine is. Two
  loads: 16 connections x 10 streams (calls batched per wake-up) and one call at a time.
- syscalls, context switches and CPU time per call: the proxy runs natively, pinned as in the
  main benchmark, and `perf stat -p PID` counts `raw_syscalls:sys_enter`, `context-switches`
  and `task-clock` during a fixed-count saturation run; `instructions:u`/`instructions:k` too
  where the machine has hardware counters (virtual machines often have none: then they are
  reported as not available and callgrind's count stands for user space).

Every run is verified as in the main benchmark (a traced call with grpc-status 0, every h2load
call succeeded, DATA bytes = calls x the response size). Writes DIR/ab.json and DIR/ab.md.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from . import callgrind, creds, machine, setups
from . import load as h2
from .__main__ import Context, call_for, instructions
from .procs import HarnessError

DEFAULT_SETUPS = ("esprit-open", "esprit-jwt-rs256-hit")

# (warm-up, measured) calls for the native run.
NATIVE_CALLS = (20000, 100000)
QUICK_NATIVE_CALLS = (1000, 5000)
PERF_EVENTS = ["instructions:u", "instructions:k", "raw_syscalls:sys_enter", "context-switches",
               "task-clock"]


class Side:
    def __init__(self, label, bin_dir):
        self.label = label
        self.bin_dir = os.path.abspath(bin_dir)
        self.esprit = os.path.join(self.bin_dir, "esprit")


def _start(ctx, setup, side):
    """Backend and proxy (`side`'s esprit), with a traced call."""
    ctx.bins["esprit"] = side.esprit
    ctx.tag = "%s-%s" % (setup.name, side.label)
    call = call_for(ctx, setup)
    backend, backend_port = setups.start_backend(ctx)
    try:
        proxy, port = setup.start(ctx, backend_port)
    except Exception:
        backend.stop()
        raise
    trace_url, url = call.targets(port, ctx.workdir, ctx.tag)
    try:
        size = h2.trace_call(trace_url, call.header_args, call.body_path)
    except Exception:
        proxy.stop()
        backend.stop()
        raise
    return backend, proxy, call, url, size


def _h2load(ctx, load, calls, url, call, size):
    log = os.path.join(ctx.workdir, ctx.tag + ".log")
    h2.remove(log)
    s = h2.run_h2load(load.sized(calls), url, call.header_args, call.body_path, log,
                      ctx.layout.loadgen)
    h2.verify(s, size)
    return s


def _callgrind(ctx, setup, side, loads):
    """{load name: instructions per call} under callgrind."""
    ctx.bins["esprit"] = side.esprit
    return instructions(ctx, setup, loads, "%s-%s" % (setup.name, side.label))


def _native(ctx, setup, side, calls):
    """perf stat counts per call, CPU µs per call and calls/s at saturation, natively."""
    backend, proxy, call, url, size = _start(ctx, setup, side)
    warm, measured = calls
    load = h2.Load(16, 10)
    try:
        _h2load(ctx, load, warm, url, call, size)
        perf_out = os.path.join(ctx.workdir, ctx.tag + ".perf")
        perf = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-o", perf_out, "-e", ",".join(PERF_EVENTS),
             "-p", str(proxy.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = proxy.cpu_seconds()
        s = _h2load(ctx, load, measured, url, call, size)
        cpu1 = proxy.cpu_seconds()
        perf.send_signal(2)  # SIGINT: perf stat prints its counts and exits
        perf.wait(timeout=30)
        counts = _perf_counts(perf_out)
        proxy.check_alive()
    finally:
        proxy.stop()
        backend.stop()
    n = s["total"]
    result = {"calls_per_s": n / s["seconds"], "cpu_us_per_call": (cpu1 - cpu0) * 1e6 / n}
    for event in PERF_EVENTS:
        value = counts.get(event)
        key = event.split(":")[-1] if event.startswith("raw_") else event
        result[key + "_per_call"] = None if value is None else value / n
    return result


def _perf_counts(path):
    """{event: count} from `perf stat -x ,` output; unsupported events are left out."""
    counts = {}
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) < 3 or line.startswith("#"):
                continue
            try:
                counts[fields[2]] = float(fields[0])
            except ValueError:
                continue  # <not supported> / <not counted>
    return counts


def measure(ctx, selected, sides, rounds, quick):
    """{setup: {side: [per-round dicts]}}; raises HarnessError on any failed run."""
    loads = callgrind.QUICK_LOADS if quick else callgrind.LOADS
    native_calls = QUICK_NATIVE_CALLS if quick else NATIVE_CALLS
    runs = {s.name: {side.label: [] for side in sides} for s in selected}
    for r in range(rounds):
        order = sides if r % 2 == 0 else list(reversed(sides))
        for setup in selected:
            for side in order:
                print("== round %d, %s, %s" % (r + 1, setup.name, side.label), file=sys.stderr,
                      flush=True)
                m = {"instructions_per_call": _callgrind(ctx, setup, side, loads)}
                m.update(_native(ctx, setup, side, native_calls))
                print("   %s" % _one_line(m), file=sys.stderr, flush=True)
                runs[setup.name][side.label].append(m)
    return runs


def _one_line(m):
    ins = " ".join("%s %.0f" % kv for kv in m["instructions_per_call"].items())
    return ("instructions/call (callgrind) %s; syscalls/call %s; context switches/call %s; "
            "CPU %.1f µs/call; %.0f calls/s"
            % (ins, _fmt(m.get("sys_enter_per_call"), 2),
               _fmt(m.get("context-switches_per_call"), 3), m["cpu_us_per_call"],
               m["calls_per_s"]))


def _fmt(value, digits):
    return "n/a" if value is None else "%.*f" % (digits, value)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, sides, loads):
    """Per set-up and metric: each side's median over rounds, its spread, and NEW/OLD."""
    metrics = [("instructions/call, callgrind, %s" % name, ("instructions_per_call", name), 0)
               for name, _, _ in loads]
    metrics += [
        ("instructions:u/call (perf)", ("instructions:u_per_call",), 0),
        ("instructions:k/call (perf)", ("instructions:k_per_call",), 0),
        ("syscalls/call", ("sys_enter_per_call",), 2),
        ("context switches/call", ("context-switches_per_call",), 3),
        ("CPU µs/call, saturation (noisy)", ("cpu_us_per_call",), 1),
        ("calls/s, saturation (noisy)", ("calls_per_s",), 0),
    ]
    table = {}
    for setup, by_side in runs.items():
        rows = []
        for label, path, digits in metrics:
            cells = {}
            for side in sides:
                values = [_get(m, path) for m in by_side[side.label]]
                values = [v for v in values if v is not None]
                cells[side.label] = {
                    "median": _median(values),
                    "min": min(values) if values else None,
                    "max": max(values) if values else None,
                }
            new, old = (cells[s.label]["median"] for s in sides)
            rows.append({"metric": label, "digits": digits, "cells": cells,
                         "ratio": new / old if new is not None and old else None})
        table[setup] = rows
    return table


def _get(m, path):
    for key in path:
        if m is None:
            return None
        m = m.get(key)
    return m


def render(result):
    sides = result["sides"]
    lines = ["# esprit A/B: %s vs %s" % (sides[0]["label"], sides[1]["label"]), ""]
    lines.append("`%s`, %s, %d round(s) alternating the order; load at start %.2f, %d "
                 "compiler(s) running." % (result["command"], result["started"],
                                           result["rounds"], result["quiet"]["load_1m"],
                                           result["quiet"]["compilers_running"]))
    lines.append("")
    for side in sides:
        lines.append("- **%s**: `%s`" % (side["label"], side["bin_dir"]))
    lines.append("")
    lines.append("Medians over the rounds (min–max). Callgrind's counts repeat to ~0.1 %; "
                 "perf's `task-clock` and calls/s move with the machine's load.")
    for setup, rows in result["table"].items():
        lines += ["", "## " + setup, "",
                  "| metric | %s | %s | %s / %s |" % (sides[0]["label"], sides[1]["label"],
                                                      sides[0]["label"], sides[1]["label"]),
                  "|---|---:|---:|---:|"]
        for row in rows:
            cells = []
            for side in sides:
                c = row["cells"][side["label"]]
                if c["median"] is None:
                    cells.append("n/a")
                elif c["min"] == c["max"]:
                    cells.append(_num(c["median"], row["digits"]))
                else:
                    cells.append("%s (%s–%s)" % (_num(c["median"], row["digits"]),
                                                  _num(c["min"], row["digits"]),
                                                  _num(c["max"], row["digits"])))
            ratio = "—" if row["ratio"] is None else "%.3f" % row["ratio"]
            lines.append("| %s | %s | %s | %s |" % (row["metric"], cells[0], cells[1], ratio))
    return "\n".join(lines) + "\n"


def _num(value, digits):
    if digits == 0:
        return "{:,}".format(int(round(value))).replace(",", " ")
    return "%.*f" % (digits, value)


def main():
    parser = argparse.ArgumentParser(prog="python3 -m harness.ab")
    parser.add_argument("--bin-dir", required=True, help="the build under test (esprit, "
                        "echo-server)")
    parser.add_argument("--compare-bin-dir", required=True, help="the reference build (esprit)")
    parser.add_argument("--label", default="new")
    parser.add_argument("--compare-label", default="old")
    parser.add_argument("--only", default=",".join(DEFAULT_SETUPS),
                        help="comma-separated set-up names (esprit rows)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="few calls, one round")
    parser.add_argument("--results", help="output directory (default bench/results/ab)")
    parser.add_argument("--python", help="the project's venv python (token pools)")
    parser.add_argument("--command", default="python3 -m harness.ab")
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args()

    for tool in ("h2load", "nghttp", "taskset", "valgrind", "callgrind_control", "perf"):
        if not shutil.which(tool):
            print("error: %s not found" % tool, file=sys.stderr)
            return 1
    sides = [Side(args.label, args.bin_dir), Side(args.compare_label, args.compare_bin_dir)]
    for path in [s.esprit for s in sides] + [os.path.join(sides[0].bin_dir, "echo-server")]:
        if not os.access(path, os.X_OK):
            print("error: %s is not an executable" % path, file=sys.stderr)
            return 1
    names = [n for n in args.only.split(",") if n]
    selected = [s for s in setups.all_setups() if s.name in names]
    if len(selected) != len(names) or not all(s.esprit for s in selected):
        print("error: --only takes esprit set-ups: %s"
              % ", ".join(s.name for s in setups.all_setups() if s.esprit), file=sys.stderr)
        return 1
    rounds = 1 if args.quick else args.rounds

    bench_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results_dir = args.results or os.path.join(bench_dir, "results", "ab")
    workdir = tempfile.mkdtemp(prefix="esprit-ab-")
    bins = {"esprit": sides[0].esprit,
            "echo-server": os.path.join(sides[0].bin_dir, "echo-server")}
    ctx = Context(bins, workdir, bench_dir, machine.choose_layout())
    ctx.pool_size = 1000
    quiet = machine.quietness()
    try:
        ctx.creds = creds.Credentials(sides[0].esprit, args.python, workdir,
                                      ctx.layout.backend).create()
    except (HarnessError, OSError) as err:
        print("error: making the run's credentials: %s" % err, file=sys.stderr)
        return 1
    loads = callgrind.QUICK_LOADS if args.quick else callgrind.LOADS
    try:
        runs = measure(ctx, selected, sides, rounds, args.quick)
    except (HarnessError, OSError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    finally:
        ctx.creds.stop()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "command": args.command,
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quiet": quiet,
        "rounds": rounds,
        "layout": ctx.layout.as_dict(),
        "callgrind_loads": [{"name": n, "load": l.sized(c).describe()} for n, l, c in loads],
        "sides": [{"label": s.label, "bin_dir": s.bin_dir} for s in sides],
        "runs": runs,
        "table": summarize(runs, sides, loads),
    }
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "ab.json"), "w") as out:
        json.dump(result, out, indent=2, sort_keys=True)
        out.write("\n")
    text = render(result)
    with open(os.path.join(results_dir, "ab.md"), "w") as out:
        out.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
