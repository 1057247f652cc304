"""Parses a Prometheus text-format page with prometheus_client's own parser.

Usage: parse_metrics.py FILE
Prints JSON: {"families": {name: type}, "samples": [{"name", "labels", "value"}]}.
Fails (exit 1, parser's error on stderr) when the page is not valid text format.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = {}
    samples = []
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples.append(
                {"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
            )
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
