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

    def test_callgrind_total_is_read_from_the_newest_dump(self):
        from . import ab
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "x.callgrind")
            for n, total in ((1, 500), (2, 700), (10, 900)):
                with open("%s.%d" % (out, n), "w") as f:
                    f.write("events: Ir\nsummary: %d\ntotals: %d\n" % (total, total))
            self.assertEqual(ab._last_dump_total(out), 900)


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
