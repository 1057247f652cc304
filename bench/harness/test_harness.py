"""Tests of the harness's success checks, against a real echo-server.

    ECHO_BIN=path/to/echo-server PYTHONPATH=bench python3 -m unittest harness.test_harness

The point: a run in which calls fail at the gRPC level (HTTP 200, grpc-status != 0) must be
refused, since h2load alone would count it as a success.
"""

import http.server
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import unittest

from . import load as h2
from . import wire
from .procs import HarnessError, Proc, wait_for_port


def _failing_request():
    # EchoRequest{payload, fail_code = 5 (NOT_FOUND), fail_message = "nope"}
    msg = wire.echo_request() + b"\x20\x05" + b"\x2a\x04nope"
    return b"\x00" + struct.pack(">I", len(msg)) + msg


class PureChecks(unittest.TestCase):
    def test_percentile_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(h2.percentile(values, 0.50), 50)
        self.assertEqual(h2.percentile(values, 0.90), 90)
        self.assertEqual(h2.percentile(values, 0.99), 99)
        self.assertEqual(h2.percentile([7], 0.99), 7)
        self.assertIsNone(h2.percentile([], 0.5))

    def test_verify_refuses_missing_bytes(self):
        ok = {"total": 10, "done": 10, "succeeded": 10, "status_2xx": 10, "status_other": 0,
              "failed": 0, "errored": 0, "timeout": 0, "bytes_data": 10 * 212}
        h2.verify(ok, 212)
        one_grpc_error = dict(ok, bytes_data=9 * 212)
        with self.assertRaises(HarnessError):
            h2.verify(one_grpc_error, 212)
        with self.assertRaises(HarnessError):
            h2.verify(dict(ok, failed=1), 212)
        with self.assertRaises(HarnessError):
            h2.verify(dict(ok, status_2xx=9, status_other=1), 212)

    def test_request_bytes(self):
        body = wire.grpc_frame(wire.echo_request(sleep_ms=1000))
        self.assertEqual(body[0], 0)
        self.assertEqual(struct.unpack(">I", body[1:5])[0], len(body) - 5)
        self.assertTrue(body.endswith(b"\x18\xe8\x07"))  # field 3, varint 1000


def _row(layout, name, rounds, guard=None):
    """A measured row as the driver stores it: per-round profiles and their medians."""
    from . import stats
    return {"layout": layout, "name": name, "label": name, "guard": guard, "rounds": rounds,
            "profiles": stats.aggregate(rounds)}


def _sat(cpu, cps=1000.0, p99=100):
    return {"saturation": {"proxy_cpu_us_per_call": cpu, "calls_per_s": cps, "p99_us": p99}}


class Guard(unittest.TestCase):
    """The regression guard of `bench/run.sh --quick`: a ratio to nghttpx of the same run,
    layout and access-log pairing, never an absolute time."""

    def _result(self, rows):
        return {"setups": rows}

    def test_within_the_multiple_passes_and_past_it_fails(self):
        from . import targets
        rows = [_row("pinned", "nghttpx", [_sat(10.0)]),
                _row("pinned", "esprit-open", [_sat(29.0)], guard="nghttpx"),
                _row("pinned", "esprit-jwt-rs256-hit", [_sat(31.0)], guard="nghttpx")]
        checks = {c["name"]: c for c in targets.guard(self._result(rows), limit=3.0)}
        self.assertTrue(checks["esprit-open"]["ok"])
        self.assertAlmostEqual(checks["esprit-open"]["ratio"], 2.9)
        self.assertFalse(checks["esprit-jwt-rs256-hit"]["ok"])

    def test_the_default_limit_is_the_named_constant(self):
        from . import targets
        over = targets.MAX_CPU_VS_PEER * 1.01
        rows = [_row("sidecar", "nghttpx", [_sat(10.0)]),
                _row("sidecar", "esprit-open", [_sat(10.0 * over)], guard="nghttpx")]
        [check] = targets.guard(self._result(rows))
        self.assertFalse(check["ok"])

    def test_a_slow_machine_alone_does_not_trip_it(self):
        # Everything 5x slower (a loaded machine): the ratio, and so the verdict, is unchanged.
        from . import targets
        rows = [_row("pinned", "nghttpx", [_sat(50.0)]),
                _row("pinned", "esprit-open", [_sat(80.0)], guard="nghttpx")]
        self.assertTrue(all(c["ok"] for c in targets.guard(self._result(rows))))

    def test_pairs_like_with_like_in_the_same_layout(self):
        from . import targets
        rows = [_row("pinned", "nghttpx", [_sat(10.0)]),
                _row("pinned", "nghttpx-log", [_sat(20.0)]),
                _row("sidecar", "nghttpx-log", [_sat(5.0)]),
                _row("pinned", "esprit-open-log", [_sat(50.0)], guard="nghttpx-log")]
        [check] = targets.guard(self._result(rows))
        self.assertEqual((check["layout"], check["ref"]), ("pinned", "nghttpx-log"))
        self.assertAlmostEqual(check["ratio"], 2.5)
        self.assertTrue(check["ok"])

    def test_unguarded_layouts_and_rows_without_reference_are_not_checked(self):
        from . import targets
        rows = [_row("two-core", "nghttpx", [_sat(10.0)]),
                _row("two-core", "esprit-jwt-rs256-hit", [_sat(90.0)], guard="nghttpx"),
                _row("pinned", "esprit-open", [_sat(90.0)], guard="nghttpx")]
        self.assertEqual(targets.guard(self._result(rows)), [])

    def test_the_guard_uses_the_median_over_rounds(self):
        from . import targets
        rows = [_row("pinned", "nghttpx", [_sat(10.0), _sat(10.0), _sat(10.0)]),
                _row("pinned", "esprit-open", [_sat(25.0), _sat(90.0), _sat(26.0)],
                     guard="nghttpx")]
        [check] = targets.guard(self._result(rows))
        self.assertAlmostEqual(check["ratio"], 2.6)
        self.assertTrue(check["ok"])


class Ratios(unittest.TestCase):
    def test_ratios_are_paired_by_round_with_their_range(self):
        from . import stats
        a = [_sat(12.0), _sat(22.0), _sat(11.0)]
        b = [_sat(10.0), _sat(20.0), _sat(10.0)]
        r = stats.paired_ratio(a, b, "saturation", "proxy_cpu_us_per_call")
        self.assertEqual(r["n"], 3)
        self.assertAlmostEqual(r["median"], 1.1)
        self.assertAlmostEqual(r["min"], 1.1)
        self.assertAlmostEqual(r["max"], 1.2)
        self.assertIsNone(stats.paired_ratio(a, [{}] * 3, "saturation", "calls_per_s"))

    def test_verdicts_pass_tie_miss(self):
        from . import stats
        self.assertEqual(stats.verdict({"median": 0.98, "min": 0.9, "max": 1.05, "n": 3},
                                        1.0, False), "PASS")
        self.assertEqual(stats.verdict({"median": 1.03, "min": 0.97, "max": 1.1, "n": 3},
                                       1.0, False), "TIE")
        self.assertEqual(stats.verdict({"median": 1.2, "min": 1.1, "max": 1.3, "n": 3},
                                       1.0, False), "MISS")
        self.assertEqual(stats.verdict({"median": 0.97, "min": 0.9, "max": 1.02, "n": 3},
                                       1.0, True), "TIE")
        # One round has no noise figure: no tie.
        self.assertEqual(stats.verdict({"median": 1.03, "min": 1.03, "max": 1.03, "n": 1},
                                       1.0, False), "MISS")

    def test_aggregate_takes_medians_and_spreads(self):
        from . import stats
        agg = stats.aggregate([_sat(3.0, 100), _sat(1.0, 300), _sat(2.0, 200)])["saturation"]
        self.assertEqual(agg["proxy_cpu_us_per_call"], 2.0)
        self.assertEqual(agg["spread"]["calls_per_s"], [100, 300])
        self.assertEqual(agg["rounds"], 3)


class CallKinds(unittest.TestCase):
    def test_grpc_web_body_needs_a_trailer_frame_with_status_0(self):
        msg = wire.grpc_frame(wire.echo_request())
        ok = msg + b"\x80" + struct.pack(">I", 15) + b"grpc-status:0\r\n"
        h2.check_body("grpc-web", ok)
        bad = msg + b"\x80" + struct.pack(">I", 15) + b"grpc-status:5\r\n"
        for body in (bad, msg, b"", ok[:-1]):
            with self.assertRaises(HarnessError):
                h2.check_body("grpc-web", body)

    def test_grpc_web_and_transcoded_headers(self):
        web = dict(wire.request_headers("t", kind="grpc-web"))
        self.assertEqual(web["content-type"], "application/grpc-web+proto")
        self.assertNotIn("te", web)
        self.assertEqual(web["authorization"], "Bearer t")
        get = dict(wire.request_headers("t", kind="http-json"))
        self.assertNotIn("content-type", get)
        self.assertFalse(wire.has_body("http-json"))
        self.assertTrue(wire.call_path("http-json").startswith("/v1/echo/"))

    def test_layouts_on_one_and_two_cores(self):
        from . import machine
        self.assertEqual([lay.name for lay in machine.available_layouts(1)], ["pinned"])
        two = {lay.name: lay for lay in machine.available_layouts(2)}
        self.assertEqual(list(two), list(machine.LAYOUTS))
        self.assertEqual(two["sidecar"].proxy, two["sidecar"].backend)
        self.assertNotEqual(two["sidecar"].proxy, two["sidecar"].loadgen)
        self.assertEqual(two["two-core"].proxy_threads, 2)

    def test_perf_counts_per_call(self):
        from . import counts
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "perf.txt")
            with open(path, "w") as f:
                f.write("<not supported>,,instructions:u,0,100.00,,\n"
                        "1500,,raw_syscalls:sys_enter,1901497,100.00,57.323,K/sec\n"
                        "30,,context-switches,1901497,100.00,525.901,/sec\n")
            per = counts.per_call(counts.parse(path), 1000)
        self.assertEqual(per["syscalls_per_call"], 1.5)
        self.assertEqual(per["context_switches_per_call"], 0.03)
        self.assertIsNone(per["instructions_u_per_call"])


class AbCounts(unittest.TestCase):
    """The A/B mode's readers (harness.ab): counts per call must come from the right numbers."""

    def test_perf_counts_skip_unsupported_events(self):
        from . import ab
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "perf.txt")
            with open(path, "w") as f:
                f.write("# started on Mon Nov 30\n\n"
                        "<not supported>,,instructions:u,0,100.00,,\n"
                        "2100,,raw_syscalls:sys_enter,1901497,100.00,57.323,K/sec\n"
                        "13,,context-switches,1901497,100.00,525.901,/sec\n")
            self.assertEqual(ab._perf_counts(path),
                             {"raw_syscalls:sys_enter": 2100.0, "context-switches": 13.0})

    def test_callgrind_totals_are_the_newest_dump_of_each_process_summed(self):
        from . import callgrind
        with tempfile.TemporaryDirectory() as d:
            prefix = os.path.join(d, "x-1.callgrind")
            # Process 7: dumps 1, 2 and 10 (the newest is 10, not 2); process 8 (a worker): one.
            for pid, n, total in ((7, 1, 500), (7, 2, 700), (7, 10, 900), (8, 1, 40)):
                with open("%s.%d.%d" % (prefix, pid, n), "w") as f:
                    f.write("events: Ir\nsummary: %d\ntotals: %d\n" % (total, total))
            # Another start's dumps beside them are not read.
            with open(os.path.join(d, "x-2.callgrind.7.11"), "w") as f:
                f.write("summary: 5\n")
            self.assertEqual(callgrind._dumped(prefix, [7, 8]), 940)
            with self.assertRaises(HarnessError):
                callgrind._dumped(prefix, [7, 9])  # a process that wrote no dump

    def test_profile_charges_self_cost_to_the_crate_of_the_source_line(self):
        from . import profile
        dump = [
            "events: Ir",
            "fl=/r/index.crates.io-abc/h2-0.4.20/src/hpack/encoder.rs",
            "fn=h2::hpack::encoder::encode_str",
            "10 100",
            # inlined from std into the same function
            "fi=/rustc/0123/library/core/src/ptr/mod.rs",
            "20 30",
            "fe=/r/index.crates.io-abc/h2-0.4.20/src/hpack/encoder.rs",
            "cfl=./string/memmove.S",
            "cfn=memcpy",
            "calls=2 5",
            "11 999",  # a call's inclusive cost: not encode_str's own
            "fl=esprit/crates/proxy/src/forward.rs",
            "fn=proxy::forward::forward",
            "5 7",
            # the standard library's own `crates/` (stdarch) and the crates it vendors
            "fl=/rustc/0123/library/stdarch/crates/core_arch/src/x86/sse2.rs",
            "fn=core::core_arch::x86::sse2::_mm_movemask_epi8",
            "1 3",
            "fl=/rust/deps/hashbrown-0.16.1/src/raw/mod.rs",
            "fn=hashbrown::raw::RawTable::find",
            "1 2",
        ]
        total, by_crate, by_fn = profile.self_costs(dump)
        self.assertEqual(total, 142)
        self.assertEqual(by_crate, {"h2": 100, "std": 35, "esprit:proxy": 7})
        self.assertEqual(by_fn["h2::hpack::encoder::encode_str"], 130)

    def test_instructions_table_gives_ratios_to_the_reference(self):
        from . import report
        result = {"instructions": {
            "loads": [{"name": "16x10", "load": "-c16"}, {"name": "serial", "load": "-c1"}],
            "rows": [
                {"name": "nghttpx", "label": "nghttpx", "layout": "pinned",
                 "per_call": {"16x10": 80000.0, "serial": 90000.0}},
                {"name": "esprit-jwt-rs256-hit", "label": "esprit hit", "layout": "pinned",
                 "esprit": True, "per_call": {"16x10": 100000.0, "serial": 99000.0}},
                {"name": "esprit-open-log", "label": "esprit log", "layout": "pinned",
                 "esprit": True, "access_log": True, "error": "boom"},
            ]}}
        lines = report._instructions_md(result)
        self.assertIn("| esprit hit | 100 000 | 99 000 | 1.25× | 1.10× | nghttpx |", lines)
        self.assertIn("| nghttpx | 80 000 | 90 000 | — | — | — |", lines)
        self.assertTrue(any(line.startswith("| esprit log | error: boom |") for line in lines))
        skipped = report._instructions_md({"instructions": {"skipped": "valgrind not installed"}})
        self.assertIn("Not counted: valgrind not installed.", skipped)


class _PathRecorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    paths = []

    def do_GET(self):
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@unittest.skipUnless(shutil.which("h2load"), "h2load not installed")
class H2loadUriOrder(unittest.TestCase):
    """Why the token-pool rows turn esprit's token cache off (bench/README.md, rows 6): each
    h2load connection walks the `-i` list from its first line, so with several connections every
    token arrives several times in a row."""

    def test_every_connection_starts_at_the_first_uri(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PathRecorder)
        _PathRecorder.paths = []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                uris = os.path.join(tmp, "uris")
                with open(uris, "w") as out:
                    out.write("http://127.0.0.1:%d/t0\n" % server.server_address[1])
                    out.write("".join("/t%d\n" % i for i in range(1, 8)))
                subprocess.run(["h2load", "--h1", "-c4", "-m1", "-n8", "-i", uris],
                               capture_output=True, timeout=30, check=True)
        finally:
            server.shutdown()
            server.server_close()
        # 4 connections x 2 calls: each sent /t0 then /t1, never /t2 and beyond.
        self.assertEqual(sorted(_PathRecorder.paths), ["/t0"] * 4 + ["/t1"] * 4)


@unittest.skipUnless(os.environ.get("ECHO_BIN"), "set ECHO_BIN to an echo-server binary")
class AgainstEchoServer(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.server = Proc("echo-server", [os.environ["ECHO_BIN"], "--listen", "127.0.0.1:0"],
                           "0-%d" % (os.cpu_count() - 1), self.dir.name)
        port = int(self.server.first_stdout_line().rsplit(":", 1)[1])
        wait_for_port(port, self.server.popen)
        self.url = "http://127.0.0.1:%d%s" % (port, wire.METHOD_PATH)
        self.headers = wire.header_args(wire.request_headers(wire.fixed_token()))
        self.good = os.path.join(self.dir.name, "good.bin")
        self.bad = os.path.join(self.dir.name, "bad.bin")
        with open(self.good, "wb") as out:
            out.write(wire.grpc_frame(wire.echo_request()))
        with open(self.bad, "wb") as out:
            out.write(_failing_request())

    def tearDown(self):
        self.server.stop()
        self.dir.cleanup()

    def _h2load(self, body):
        log = os.path.join(self.dir.name, "log")
        return h2.run_h2load(h2.Load(2, 5, requests=200), self.url, self.headers, body, log,
                             "0-%d" % (os.cpu_count() - 1))

    def test_successful_calls_pass(self):
        size = h2.trace_call(self.url, self.headers, self.good)
        summary = self._h2load(self.good)
        h2.verify(summary, size)
        self.assertEqual(summary["total"], 200)

    def test_traced_grpc_error_is_refused(self):
        with self.assertRaisesRegex(HarnessError, "grpc-status"):
            h2.trace_call(self.url, self.headers, self.bad)

    def test_grpc_errors_that_h2load_counts_as_successes_are_refused(self):
        size = h2.trace_call(self.url, self.headers, self.good)
        summary = self._h2load(self.bad)
        # h2load alone calls these successes ...
        self.assertEqual(summary["succeeded"], 200)
        self.assertEqual(summary["status_2xx"], 200)
        # ... the byte check does not.
        with self.assertRaisesRegex(HarnessError, "DATA bytes"):
            h2.verify(summary, size)


if __name__ == "__main__":
    unittest.main()
