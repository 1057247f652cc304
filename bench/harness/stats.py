"""Medians over rounds, and ratios with the run's own noise figure (pure functions).

A full run measures every row in each of N rounds (every row once per round, in the same order),
so a drift of the machine's load hits neighbouring rows alike. A ratio of row A to row B is
taken round by round (A's round i over B's round i); the reported ratio is the median of those,
and its noise is their range: a target missed by less than that range is a tie, not a miss.
"""

import statistics

# The measurements whose spread over rounds is kept (min, max) next to the median.
SPREAD_KEYS = ("calls_per_s", "proxy_cpu_us_per_call", "p99_us")


def aggregate(rounds):
    """`rounds`: [{profile: {key: number or None}}] of one row. Returns {profile: {key: median},
    with "spread": {key: [min, max]} and "rounds": n} for the profiles every round has."""
    out = {}
    if not rounds:
        return out
    names = [p for p in rounds[0] if all(p in r for r in rounds)]
    for name in names:
        runs = [r[name] for r in rounds]
        merged = {}
        for key, value in runs[0].items():
            values = [run.get(key) for run in runs]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                merged[key] = statistics.median(values)
            else:
                merged[key] = value if len(set(map(repr, values))) == 1 else (
                    None if any(v is None for v in values) else value)
        merged["spread"] = {key: [min(r[key] for r in runs), max(r[key] for r in runs)]
                            for key in SPREAD_KEYS
                            if all(isinstance(r.get(key), (int, float)) for r in runs)}
        merged["rounds"] = len(runs)
        out[name] = merged
    return out


def paired_ratio(a_rounds, b_rounds, profile, key):
    """A over B round by round: {median, min, max, n}, or None if a round lacks the number."""
    ratios = []
    for a, b in zip(a_rounds, b_rounds):
        x = a.get(profile, {}).get(key)
        y = b.get(profile, {}).get(key)
        if x is None or not y:
            return None
        ratios.append(x / y)
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "n": len(ratios)}


def verdict(ratio, limit, higher_is_better):
    """PASS when the median meets the limit; TIE when it misses but some round met it (the
    miss is within the run's noise); MISS otherwise; "—" without a ratio."""
    if not ratio:
        return "—"
    if higher_is_better:
        ok, some = ratio["median"] >= limit, ratio["max"] >= limit
    else:
        ok, some = ratio["median"] <= limit, ratio["min"] <= limit
    if ok:
        return "PASS"
    return "TIE" if some and ratio["n"] > 1 else "MISS"


def describe(ratio):
    """'1.17× (1.10–1.25 over 3 rounds)', or '1.17× (one round)'."""
    if not ratio:
        return "not measured"
    if ratio["n"] == 1:
        return "%.2f× (one round)" % ratio["median"]
    return "%.2f× (%.2f–%.2f over %d rounds)" % (ratio["median"], ratio["min"], ratio["max"],
                                                ratio["n"])
