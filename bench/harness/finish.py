"""Adds the criterion micro-benchmark to a finished run's report:

    python3 -m harness.finish --results DIR --criterion-dir DIR [--criterion-since UNIX_TIME]

bench/run.sh runs criterion after the h2load measurements (so that they start on a machine no
benchmark of ours is loading), then this reads criterion's estimates into DIR/latest.json,
recomputes the targets and rewrites latest.md.
"""

import argparse
import json
import os
import sys

from . import report, targets


def main():
    parser = argparse.ArgumentParser(prog="python3 -m harness.finish")
    parser.add_argument("--results", required=True, help="the run's results directory")
    parser.add_argument("--criterion-dir", required=True)
    parser.add_argument("--criterion-since", type=float, default=0)
    args = parser.parse_args()
    path = os.path.join(args.results, "latest.json")
    with open(path) as f:
        result = json.load(f)
    result["criterion"] = targets.read_criterion(args.criterion_dir, args.criterion_since)
    if not targets.criterion_table(result["criterion"]):
        print("error: no criterion estimates of this run under %s" % args.criterion_dir,
              file=sys.stderr)
        return 1
    result["targets"] = targets.evaluate(result)
    result["guard"] = {"limit": targets.MAX_CPU_VS_PEER, "checks": targets.guard(result)}
    report.write_json(path, result)
    report.write_markdown(os.path.join(args.results, "latest.md"), result)
    print("added criterion's numbers to %s/latest.{json,md}" % args.results, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
