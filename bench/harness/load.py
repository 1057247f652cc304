"""Driving h2load and nghttp, and proving that the calls they made succeeded.

h2load counts HTTP statuses only; a failed gRPC call is usually an HTTP 200 whose trailers carry
`grpc-status`. So a run counts only when:
  1. a traced call (nghttp -v, the same headers and body) through the same set-up ended with
     `grpc-status: 0` in its trailers, and its response DATA is one well-formed gRPC message;
  2. h2load reports every call done and succeeded (no failed, errored or timed-out stream, all 2xx);
  3. the DATA bytes h2load received equal calls x the traced call's DATA size. A gRPC error has
     no message (0 bytes), so a single failed call among millions breaks the equality.
"""

import json
import os
import re
import subprocess
import time

from .procs import HarnessError


class Load:
    """One h2load invocation: connections, streams per connection, optional rate, and either a
    call count (`requests`) or, for a profile, the target duration it is sized to.

    Measured runs use a call count, not h2load's -D: when -D's clock stops, calls still in
    flight may have their headers and DATA counted but not their completion, which makes the
    byte-exact success check impossible. The count is sized to last about `duration_s`.
    """

    def __init__(self, clients, streams, duration_s=None, requests=None, rps=None):
        self.clients = clients
        self.streams = streams
        self.duration_s = duration_s
        self.requests = requests
        self.rps = rps

    def sized(self, requests):
        return Load(self.clients, self.streams, self.duration_s, max(requests, self.clients),
                    self.rps)

    def args(self):
        args = ["-t1", "-c%d" % self.clients, "-m%d" % self.streams]
        if self.rps:
            # h2load --rps: requests per second *per client*.
            args.append("--rps=%d" % self.rps)
        args.append("-n%d" % self.requests)
        return args

    def describe(self):
        parts = ["-t1 -c%d -m%d" % (self.clients, self.streams)]
        if self.rps:
            parts.append("--rps=%d (%d calls/s in total)" % (self.rps, self.rps * self.clients))
        if self.requests:
            parts.append("-n%d" % self.requests)
        else:
            parts.append("-n sized to last about %g s" % self.duration_s)
        return " ".join(parts)


def trace_call(url, header_args, body_path, kind="grpc"):
    """One call with `nghttp -v`: returns the response DATA size; raises unless it succeeded:
    gRPC: `grpc-status: 0` in the trailers and a message; gRPC-Web: HTTP 200 and a body ending in
    the trailer frame (flag 0x80) that carries `grpc-status:0`; HTTP/JSON: HTTP 200 and a JSON
    body. `body_path` None: a GET without body."""
    data_args = ["-d", body_path] if body_path else []
    argv = ["nghttp", "-v"] + data_args + header_args + [url]
    proc = subprocess.run(argv, capture_output=True, timeout=30)
    text = proc.stdout.decode("latin-1") + proc.stderr.decode("latin-1")
    status = re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", text)
    grpc_status = re.findall(r"recv \(stream_id=\d+\) grpc-status: (\S+)", text)
    data = [int(n) for n in re.findall(r"recv DATA frame <length=(\d+)", text)]
    total = sum(data)
    if kind == "grpc":
        if proc.returncode != 0 or status != ["200"] or grpc_status != ["0"]:
            message = re.findall(r"grpc-message: (.*)", text)
            raise HarnessError(
                "traced call failed: exit %d, :status %s, grpc-status %s %s"
                % (proc.returncode, status, grpc_status, message)
            )
        if total < 5:
            raise HarnessError("traced call returned no gRPC message (%d DATA bytes)" % total)
        return total
    if proc.returncode != 0 or status != ["200"] or grpc_status:
        raise HarnessError("traced %s call failed: exit %d, :status %s, grpc-status in headers %s"
                           % (kind, proc.returncode, status, grpc_status))
    # The body itself (nghttp without -v writes only the body to stdout).
    body = subprocess.run(["nghttp"] + data_args + header_args + [url], capture_output=True,
                          timeout=30).stdout
    check_body(kind, body)
    if len(body) != total:
        raise HarnessError("traced %s call: %d body bytes, %d DATA bytes" % (kind, len(body), total))
    return total


def check_body(kind, body):
    """Raises unless `body` is a successful response of `kind` (grpc-web or http-json)."""
    if kind == "grpc-web":
        frames, pos = [], 0
        while pos + 5 <= len(body):
            length = int.from_bytes(body[pos + 1:pos + 5], "big")
            frames.append((body[pos], body[pos + 5:pos + 5 + length]))
            pos += 5 + length
        if pos != len(body) or len(frames) < 2 or frames[-1][0] != 0x80:
            raise HarnessError("gRPC-Web body is not messages then a trailer frame: %r"
                               % body[:80])
        trailers = frames[-1][1].decode("latin-1").lower().split("\r\n")
        if "grpc-status:0" not in [t.replace(" ", "") for t in trailers]:
            raise HarnessError("gRPC-Web trailer frame without grpc-status 0: %r" % trailers)
    elif kind == "http-json":
        try:
            json.loads(body.decode("utf-8"))
        except ValueError as err:
            raise HarnessError("HTTP/JSON body is not JSON: %s: %r" % (err, body[:80]))
    else:
        raise HarnessError("unknown call kind %r" % kind)


_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: .*\((\d+)\) total, .*\((\d+)\) headers .*\((\d+)\) data")
_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s),")


def run_h2load(load, url, header_args, body_path, log_path, cpus, sample=None):
    """Runs h2load pinned to `cpus`; returns its parsed summary (raises on an unreadable one).

    `url` is the URL every call goes to, or a list of h2load arguments in its place
    (`["-i", FILE]`: a file of URIs each client cycles through, from the first line).
    `sample`, if given, is called about every 50 ms while h2load runs (memory in flight).
    """
    argv = (
        ["taskset", "-c", cpus, "h2load"]
        + load.args()
        + ["--log-file=" + log_path]
        + (["-d", body_path] if body_path else [])
        + header_args
        + (list(url) if isinstance(url, (list, tuple)) else [url])
    )
    deadline = time.monotonic() + 10 * (load.duration_s or 10) + 120
    out_path, err_path = log_path + ".stdout", log_path + ".stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise HarnessError("h2load did not finish in time")
                if sample:
                    sample()
    with open(out_path, "rb") as out, open(err_path, "rb") as err:
        text = out.read().decode("utf-8", "replace")
        err_text = err.read().decode("utf-8", "replace")
    requests, status, traffic = _REQUESTS.search(text), _STATUS.search(text), _TRAFFIC.search(text)
    finished = _FINISHED.search(text)
    if proc.returncode != 0 or not (requests and status and traffic and finished):
        raise HarnessError(
            "h2load failed (exit %d): %s %s"
            % (proc.returncode, text[-400:], err_text[-400:])
        )
    total, started, done, succeeded, failed, errored, timeouts = map(int, requests.groups())
    seconds = float(finished.group(1)) / (1000.0 if finished.group(2) == "ms" else 1.0)
    return {
        "argv": argv,
        "total": total,
        "started": started,
        "done": done,
        "succeeded": succeeded,
        "failed": failed,
        "errored": errored,
        "timeout": timeouts,
        "status_2xx": int(status.group(1)),
        "status_other": sum(int(n) for n in status.groups()[1:]),
        "bytes_total": int(traffic.group(1)),
        "bytes_headers": int(traffic.group(2)),
        "bytes_data": int(traffic.group(3)),
        "seconds": seconds,
    }


def verify(summary, response_data_bytes):
    """Raises unless every call of the run succeeded at the gRPC level (see module doc)."""
    s = summary
    problems = []
    if s["total"] == 0:
        problems.append("no calls completed")
    if s["failed"] or s["errored"] or s["timeout"]:
        problems.append(
            "%d failed, %d errored, %d timed out" % (s["failed"], s["errored"], s["timeout"])
        )
    if not (s["total"] == s["done"] == s["succeeded"] == s["status_2xx"]) or s["status_other"]:
        problems.append(
            "total %d, done %d, succeeded %d, 2xx %d, other statuses %d"
            % (s["total"], s["done"], s["succeeded"], s["status_2xx"], s["status_other"])
        )
    expected = s["succeeded"] * response_data_bytes
    if s["bytes_data"] != expected:
        problems.append(
            "received %d DATA bytes, expected %d calls x %d = %d (some calls failed at the "
            "gRPC level)" % (s["bytes_data"], s["succeeded"], response_data_bytes, expected)
        )
    if problems:
        raise HarnessError("run not counted: " + "; ".join(problems))


def latencies_us(log_path):
    """Per-call latencies (µs) from h2load's --log-file; raises on a failed stream (status -1)."""
    values = []
    with open(log_path) as log:
        for line in log:
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            if fields[1] != "200":
                raise HarnessError("h2load log has a call with HTTP status %s" % fields[1])
            values.append(int(fields[2]))
    values.sort()
    return values


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, -(-int(round(fraction * 1000)) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
