"""The issue's targets, computed from one run, and the criterion micro-benchmark's numbers.

Each target is a dict {id, what, value, target, verdict} with verdict PASS, TIE (missed by the
median but met in some round: within the run's noise), MISS or "—" (a row it needs was not run).
The thresholds are here, in one place, and so is the regression guard (`guard`).
"""

import glob
import json
import os

from . import stats

HIT = "esprit-jwt-rs256-hit"
OPEN = "esprit-open"
PEERS = ("nginx", "nghttpx")
ALGORITHMS = ("RS256", "ES256", "EdDSA")

# Thresholds: issue 15's. (a)-(d) in the pinned and sidecar layouts, each in both access-log
# pairings; (g) in the two-core layout; (f) memory per in-flight stream against nghttpx's.
MAX_HIT_CPU_VS_OPEN = 1.05
MAX_IDLE_RSS_MIB = 20.0
MAX_MISS_VS_BARE = 1.20


def read_criterion(criterion_dir, since=0):
    """{full id: {ns, lower_ns, upper_ns}} from criterion's `new/` files written at or after
    `since` (Unix time), so an earlier run's numbers are never reported as this run's."""
    out = {}
    pattern = os.path.join(criterion_dir, "**", "new", "benchmark.json")
    for bench_path in glob.glob(pattern, recursive=True):
        new_dir = os.path.dirname(bench_path)
        try:
            if os.path.getmtime(os.path.join(new_dir, "estimates.json")) < since:
                continue
            with open(bench_path) as f:
                full_id = json.load(f)["full_id"]
            with open(os.path.join(new_dir, "estimates.json")) as f:
                est = json.load(f)
        except (OSError, KeyError, ValueError):
            continue
        if not full_id.startswith(("authenticate/", "bare_verify/", "jwt_parse/")):
            continue
        # The slope (time per iteration from the linear fit) when criterion computed one,
        # otherwise the mean; both in ns.
        point = est.get("slope") or est["mean"]
        out[full_id] = {
            "ns": point["point_estimate"],
            "lower_ns": point["confidence_interval"]["lower_bound"],
            "upper_ns": point["confidence_interval"]["upper_bound"],
        }
    return out


def criterion_table(crit):
    """Per algorithm: miss, hit, bare verify (µs) and miss / bare with its verdict."""
    rows = []
    for alg in ALGORITHMS:
        miss = crit.get("authenticate/miss/%s" % alg)
        hit = crit.get("authenticate/hit/%s" % alg)
        bare = crit.get("bare_verify/%s" % alg)
        parse = crit.get("jwt_parse/%s" % alg)
        if not (miss and bare):
            continue
        ratio = miss["ns"] / bare["ns"]
        rows.append({
            "algorithm": alg,
            "miss_us": miss["ns"] / 1000,
            "bare_us": bare["ns"] / 1000,
            "hit_us": hit["ns"] / 1000 if hit else None,
            "parse_us": parse["ns"] / 1000 if parse else None,
            "miss_vs_bare": ratio,
            "verdict": "PASS" if ratio <= MAX_MISS_VS_BARE else "MISS",
        })
    return rows


def _rows(result):
    """{(layout, name): row} of the rows measured."""
    return {(r.get("layout", "pinned"), r["name"]): r for r in result.get("setups", [])
            if r.get("profiles")}


def _m(rows, name, profile, key, layout="pinned"):
    return rows.get((layout, name), {}).get("profiles", {}).get(profile, {}).get(key)


def _target(tid, what, value, target, ok):
    if value is None or ok is None:
        return {"id": tid, "what": what, "value": value or "not measured", "target": target,
                "verdict": "—"}
    return {"id": tid, "what": what, "value": value, "target": target,
            "verdict": ok if isinstance(ok, str) else ("PASS" if ok else "MISS")}


def ratio(rows, layout, a, b, profile, key):
    """Row a over row b of one layout, round by round (stats.paired_ratio)."""
    ra, rb = rows.get((layout, a)), rows.get((layout, b))
    if not (ra and rb):
        return None
    return stats.paired_ratio(ra.get("rounds", [ra["profiles"]]), rb.get("rounds", [rb["profiles"]]),
                              profile, key)


# Like with like: (suffix of the esprit rows, nghttpx row, what the pairing is).
PAIRINGS = (("", "nghttpx", "no access log (esprit `RUST_LOG=warn`, nghttpx without one)"),
            ("-log", "nghttpx-log", "access log (esprit's default, nghttpx `--accesslog-file`)"))

# The regression guard (`bench/run.sh --quick` in CI fails past it): esprit's proxy CPU per
# call at saturation over nghttpx's in the same run, layout and access-log pairing. A ratio: a
# slow or loaded machine slows both. What it was on 7e0ac61 (full run of 2026-12-01, 3 rounds, a
# machine at load 7 with 10 compilers running): medians 1.7-1.9x pinned, 1.7-2.7x sidecar, single
# rounds up to 2.92x (sidecar, access-log pairing; esprit's log line is the difference); quick
# rounds on the same machine 1.5-2.5x. On a quiet machine issue 15 measured 1.1-1.2x pinned and
# 2.0-2.4x sidecar. 3.5x clears the worst round seen by 20 %, so a busy CI machine does not fail
# it, and still fails a change that doubles the cost of a no-log row (1.7-1.8x today).
MAX_CPU_VS_PEER = 3.5
# Not the two-core layout: when this guard was set, esprit's multi-threaded runtime handed work
# between its threads (0.4-1 context switch per call against nghttpx's 0.07) and its ratio went
# from 2.3x to 3.1x between rounds of one run. Its workers are now single-threaded runtimes
# (0.12 context switch per call, 1.6-2.1x nghttpx's CPU per call in quick runs of 2026-12-01);
# guarding it too waits for more runs on the CI machine.
GUARD_LAYOUTS = ("pinned", "sidecar")
MIN_TWO_WORKER_SCALING = 1.6


def guard(result, limit=None):
    """[{layout, name, ref, ratio, ok}] for every measured row with a `guard` row measured in the
    same layout (of GUARD_LAYOUTS): saturation proxy CPU per call, median over rounds, row over
    its reference."""
    limit = MAX_CPU_VS_PEER if limit is None else limit
    rows = _rows(result)
    out = []
    for (layout, name), row in sorted(rows.items()):
        ref = row.get("guard")
        if layout not in GUARD_LAYOUTS:
            continue
        cpu = _m(rows, name, "saturation", "proxy_cpu_us_per_call", layout)
        base = _m(rows, ref, "saturation", "proxy_cpu_us_per_call", layout) if ref else None
        if cpu is None or not base:
            continue
        out.append({"layout": layout, "name": name, "ref": ref, "ratio": cpu / base,
                    "ok": cpu / base <= limit})
    return out


def evaluate(result):
    rows = _rows(result)
    out = []
    hit = "esprit-jwt-rs256-hit"
    for layout in ("pinned", "sidecar"):
        for sfx, peer, about in PAIRINGS:
            me = hit + sfx
            if (layout, me) not in rows or (layout, peer) not in rows:
                continue
            tag = "%s, %s" % (layout, about)
            r = ratio(rows, layout, me, peer, "saturation", "calls_per_s")
            out.append(_target("a", "JWT cache hit: calls/s at saturation / %s's; %s" % (peer, tag),
                               stats.describe(r) if r else None, "≥ 1.00",
                               stats.verdict(r, 1.0, True) if r else None))
            r = ratio(rows, layout, me, peer, "saturation", "proxy_cpu_us_per_call")
            out.append(_target("b", "JWT cache hit: proxy CPU/call at saturation / %s's; %s"
                               % (peer, tag), stats.describe(r) if r else None, "≤ 1.00",
                               stats.verdict(r, 1.0, False) if r else None))
            r = ratio(rows, layout, me, peer, "rate", "p99_us")
            out.append(_target("c", "JWT cache hit: p99 at 5 000 calls/s / %s's; %s" % (peer, tag),
                               stats.describe(r) if r else None, "≤ 1.00",
                               stats.verdict(r, 1.0, False) if r else None))
            r = ratio(rows, layout, me, "esprit-open" + sfx, "saturation", "proxy_cpu_us_per_call")
            out.append(_target("d", "JWT cache hit: proxy CPU/call / esprit without "
                               "authentication's, saturation; %s" % tag,
                               stats.describe(r) if r else None, "≤ %.2f" % MAX_HIT_CPU_VS_OPEN,
                               stats.verdict(r, MAX_HIT_CPU_VS_OPEN, False) if r else None))
    layout = "two-core"
    for sfx, peer, about in PAIRINGS:
        r = ratio(rows, layout, hit + sfx, peer, "saturation", "calls_per_s")
        if r:
            out.append(_target("g", "two workers, two cores: JWT cache hit calls/s / %s "
                               "`--workers=2`; %s" % (peer, about), stats.describe(r), "≥ 1.00",
                               stats.verdict(r, 1.0, True)))
    r = ratio(rows, layout, hit, hit + "-1w", "saturation", "calls_per_s")
    if r:
        out.append(_target("g", "two workers, two cores: JWT cache hit calls/s / esprit's own "
                           "with one worker (same layout, no access log)", stats.describe(r),
                           "≥ %.2f" % MIN_TWO_WORKER_SCALING,
                           stats.verdict(r, MIN_TWO_WORKER_SCALING, True)))

    idle = {"%s/%s" % k: r["idle_rss_kib"] / 1024 for k, r in rows.items()
            if k[1].startswith("esprit") and r.get("idle_rss_kib")}
    worst = max(idle.values()) if idle else None
    out.append(_target(
        "e", "esprit idle RSS (largest of its rows)",
        "%.1f MiB (%s)" % (worst, max(idle, key=idle.get)) if idle else None,
        "< %.0f MiB" % MAX_IDLE_RSS_MIB, worst < MAX_IDLE_RSS_MIB if idle else None))

    conc = {c["name"]: c for c in result.get("concurrency", {}).get("rows", [])
            if not c.get("error") and c.get("kib_per_stream")}
    ref = conc.get("nghttpx", {}).get("kib_per_stream")
    for name in ("esprit-open", hit):
        mine = conc.get(name, {}).get("kib_per_stream")
        have = mine is not None and ref
        out.append(_target(
            "f", "memory per in-flight stream (10 000 in flight), %s / nghttpx's" % (
                "JWT cache hit" if name == hit else "esprit without authentication"),
            "%.1f / %.1f KiB (%.2f×); max RSS %.1f / %.1f MiB" % (
                mine, ref, mine / ref, conc[name]["proxy_max_rss_kib"] / 1024,
                conc["nghttpx"]["proxy_max_rss_kib"] / 1024) if have else None,
            "≤ 1.00", mine <= ref if have else None))

    for name in ("esprit-grpc-web", "esprit-transcoded"):
        for key, what in (("proxy_cpu_us_per_call", "proxy CPU/call"),
                          ("calls_per_s", "calls/s")):
            r = ratio(rows, "pinned", name, "esprit-open", "saturation", key)
            if r:
                out.append(_target("w", "%s: %s at saturation / esprit's plain gRPC's" % (
                    rows[("pinned", name)]["label"], what), stats.describe(r),
                    "reported (no target)", None))
                out[-1]["value"] = stats.describe(r)

    for row in criterion_table(result.get("criterion", {})):
        out.append(_target(
            "criterion %s" % row["algorithm"],
            "authenticate on a cache miss / bare aws-lc-rs verification, %s" % row["algorithm"],
            "%.2f µs / %.2f µs = %.3f×" % (row["miss_us"], row["bare_us"], row["miss_vs_bare"]),
            "≤ %.2f×" % MAX_MISS_VS_BARE, row["miss_vs_bare"] <= MAX_MISS_VS_BARE))
    return out
