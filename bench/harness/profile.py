"""Where a callgrind dump's instructions went, by crate and by function (self cost):

    python3 -m harness.profile DUMP [--calls N] [--top K]

DUMP is one of the dumps a run leaves with `--keep-workdir`
(`callgrind-<row>-<n>.callgrind.<pid>.<k>`;
the first `k` of a process is the 16x10 load, the second the serial one), best written with
`VALGRIND_OPTS="--compress-strings=no --compress-pos=no"` (compressed names are defined only in a
process's first dump). Self cost is charged to the source file of each line, so code inlined
from a crate counts as that crate's (an h2 function inlined into esprit's counts as h2). `--calls`
turns totals into instructions per call. `callgrind_annotate --inclusive=yes DUMP` gives the
inclusive view.
"""

import argparse
import collections
import re
import sys

_REGISTRY = re.compile(r"/index\.crates\.io-[^/]+/([^/]+?)-\d[^/]*/")
_OURS = re.compile(r"/crates/([^/]+)/src/")


def crate_of(path):
    """The crate a source path belongs to: a registry crate's name, `esprit:<crate>` for this
    workspace, `std` for the Rust standard library, `libc` for glibc, else the path."""
    path = path or "???"
    # The standard library first: its sources have `crates/<name>/src/` paths too (stdarch's
    # core_arch), and the crates it vendors are built from `/rust/deps/`.
    if path.startswith(("/rustc/", "/rust/deps/")):
        return "std"
    m = _REGISTRY.search(path)
    if m:
        return m.group(1)
    m = _OURS.search(path)
    if m:
        return "esprit:" + m.group(1)
    if path.startswith("./") or "glibc" in path:
        return "libc"
    return path


def self_costs(lines):
    """(total, {crate: cost}, {function: cost}) from an uncompressed callgrind dump."""
    by_crate, by_fn = collections.Counter(), collections.Counter()
    total = 0
    fl = fi = fn = None
    call_cost_next = False
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        if line[0].isdigit() or line[0] in "+-*":
            if call_cost_next:  # the inclusive cost of a call: not this function's own
                call_cost_next = False
                continue
            fields = line.split()
            if len(fields) < 2:
                continue
            cost = int(fields[1])
            total += cost
            by_crate[crate_of(fi or fl)] += cost
            by_fn[fn] += cost
        elif line.startswith("fl="):
            fl, fi = line[3:], None
        elif line.startswith(("fi=", "fe=")):
            fi = line[3:]
        elif line.startswith("fn="):
            fn, fi = line[3:], None
        elif line.startswith("calls="):
            call_cost_next = True
    return total, by_crate, by_fn


def main():
    parser = argparse.ArgumentParser(prog="python3 -m harness.profile")
    parser.add_argument("dump")
    parser.add_argument("--calls", type=int, default=1, help="calls the dump covers")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.dump) as f:
        total, by_crate, by_fn = self_costs(f)
    if not total:
        print("error: no costs in %s" % args.dump, file=sys.stderr)
        return 1
    print("total: %.0f instructions%s" % (total / args.calls,
                                          " per call" if args.calls > 1 else ""))
    for title, table in (("by crate", by_crate), ("by function", by_fn)):
        print("\n%s (self cost)" % title)
        for name, cost in table.most_common(args.top):
            print("%6.2f %%  %10.0f  %s" % (100.0 * cost / total, cost / args.calls, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
