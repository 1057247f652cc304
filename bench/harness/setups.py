"""The set-ups measured side by side: what sits between h2load and the echo backend.

Each row starts its own echo backend, so no set-up inherits another's connections or memory.
Rows with `enabled=False` are part of the table but not run yet; `why_disabled` says what they
wait for, and the report lists them.
"""

import os
import shutil

from . import creds, wire
from .procs import HarnessError, Proc, free_port, wait_for_port


ALL_LAYOUTS = ("pinned", "sidecar", "two-core")


class Setup:
    """One row. `layouts`: where it runs (machine.LAYOUTS). `kind`: the call it makes
    (wire.CALL_KINDS: grpc, grpc-web, http-json). `access_log`: the proxy writes one line per call
    (nghttpx `accesslog-file`, esprit's default log) rather than none. `guard`: the row of the same
    layout whose CPU per call this one's may exceed by at most targets.MAX_CPU_VS_PEER (the
    regression guard). `compare`: the row its ratios are taken to (gRPC-Web and transcoding: esprit's
    own plain gRPC, since nghttpx does neither)."""

    def __init__(self, name, label, start, peer=False, esprit=False, enabled=True, why="",
                 many_streams=False, pool=None, layouts=("pinned",), kind="grpc",
                 access_log=False, guard=None, compare=None):
        self.name = name
        self.layouts = tuple(layouts)
        self.kind = kind
        self.access_log = access_log
        self.guard = guard
        self.compare = compare
        # Rows 6: each call carries a different token of this algorithm's pool, in the URI.
        self.pool = pool
        # Part of the 10 000-calls-in-flight memory run (see all_setups for nginx).
        self.many_streams = many_streams
        self.label = label
        self._start = start
        self.peer = peer  # a proxy users would otherwise deploy (ratios are taken to the best)
        self.esprit = esprit
        self.enabled = enabled
        self.why_disabled = why

    def start(self, ctx, backend_port):
        """Starts the proxy (None for `direct`); returns (proc or None, port h2load calls)."""
        return self._start(ctx, backend_port)


def start_backend(ctx):
    proc = Proc(
        "echo-server-" + ctx.tag,
        # --plain: replies carry the payload only, so a call costs the backend (and the bytes
        # a proxy relays back) the same whatever headers the proxy adds (esprit's
        # x-endpoint-api-userinfo, for one).
        [ctx.bins["echo-server"], "--listen", "127.0.0.1:0", "--plain"],
        ctx.layout.backend,
        ctx.workdir,
    )
    addr = proc.first_stdout_line()
    port = int(addr.rsplit(":", 1)[1])
    wait_for_port(port, proc.popen)
    return proc, port


def _direct(ctx, backend_port):
    return None, backend_port


def _render(template_path, out_path, values):
    with open(template_path) as template:
        text = template.read()
    for key, value in values.items():
        text = text.replace("@%s@" % key, str(value))
    if "@" in "".join(line.split("#")[0] for line in text.splitlines()):
        raise HarnessError("unfilled placeholder in %s" % out_path)
    with open(out_path, "w") as out:
        out.write(text)


def _nginx(ctx, backend_port):
    port = free_port()
    work = os.path.join(ctx.workdir, "nginx")
    os.makedirs(work, exist_ok=True)
    conf = os.path.join(work, "nginx.conf")
    _render(
        os.path.join(ctx.bench_dir, "configs", "nginx.conf.in"),
        conf,
        {"WORKERS": ctx.layout.proxy_threads, "WORK": work, "PORT": port,
         "BACKEND_PORT": backend_port},
    )
    # ctx.wrapper: a command the proxy runs under (callgrind), else empty; as for every proxy.
    proc = Proc("nginx-" + ctx.tag,
                list(ctx.wrapper) + [shutil.which("nginx") or "nginx", "-c", conf, "-p", work],
                ctx.layout.proxy, ctx.workdir)
    wait_for_port(port, proc.popen, timeout=ctx.start_timeout)
    return proc, port


def _nghttpx(access_log=False):
    """nghttpx; with `access_log`, its access log goes to a file in the work dir, on the same
    disk as esprit's log (its stderr, also a file in the work dir)."""

    def start(ctx, backend_port):
        port = free_port()
        conf = os.path.join(ctx.workdir, "nghttpx-%s.conf" % ctx.tag)
        _render(
            os.path.join(ctx.bench_dir, "configs", "nghttpx.conf.in"),
            conf,
            {"WORKERS": ctx.layout.proxy_threads, "WORK": ctx.workdir, "PORT": port,
             "BACKEND_PORT": backend_port},
        )
        argv = list(ctx.wrapper) + [shutil.which("nghttpx") or "nghttpx", "--conf=" + conf]
        if access_log:
            argv.append("--accesslog-file=" + os.path.join(ctx.workdir,
                                                           "nghttpx-%s-access.log" % ctx.tag))
        proc = Proc("nghttpx-" + ctx.tag, argv, ctx.layout.proxy, ctx.workdir)
        wait_for_port(port, proc.popen, timeout=ctx.start_timeout)
        return proc, port

    return start


def _esprit(config, extra_args=(), access_log=False, threads=None):
    """`config`: a file in bench/configs, or a function of the context writing one and
    returning its path (configs naming the run's key server). `access_log`: esprit's default
    log (`RUST_LOG` unset: one access-log line per call on stderr, a file in the work dir);
    otherwise `RUST_LOG=warn`, no access log. `threads`: `--worker-threads`, default the
    layout's."""

    def start(ctx, backend_port):
        port = free_port()
        if callable(config):
            config_path = config(ctx)
        else:
            config_path = os.path.join(ctx.bench_dir, "configs", config)
        # ctx.wrapper: a command the proxy runs under (callgrind), else empty.
        argv = list(ctx.wrapper) + [
            ctx.bins["esprit"], "proxy",
            "--service-config", config_path,
            "--descriptor", os.path.join(ctx.repo_dir, "crates", "echo", "proto", "echo.proto"),
            "--backend", "grpc://127.0.0.1:%d" % backend_port,
            "--listen", "127.0.0.1:%d" % port,
            "--worker-threads", str(threads or ctx.layout.proxy_threads),
        ] + list(extra_args)
        if "--service-control-url" in extra_args:
            argv[argv.index("--service-control-url") + 1] = ctx.creds.url
        # Like with like: warn hides esprit's per-call access-log line, as `access_log off` does
        # for nginx and no `accesslog-file` for nghttpx; the "-log" rows keep esprit's default.
        env = {"RUST_LOG": None} if access_log else {"RUST_LOG": "warn"}
        proc = Proc("esprit-" + ctx.tag, argv, ctx.layout.proxy, ctx.workdir, env=env)
        wait_for_port(port, proc.popen, timeout=ctx.start_timeout)
        return proc, port

    return start


_CONFIG_HEAD = (
    "type: google.api.Service\n"
    "config_version: 3\n"
    "name: %s\n"
    "title: esprit benchmark echo service\n"
    "apis:\n"
    "- name: esprit.echo.v1.Echo\n"
)
_NO_API_KEY = "usage:\n  rules:\n  - selector: \"*\"\n    allow_unregistered_calls: true\n"


def _jwt_config(ctx):
    """Every method needs a token from the run's service account (issuer = its email, keys from
    `esprit iam serve`'s JWKS, audience = the service name by default); no API key."""
    path = os.path.join(ctx.workdir, "echo_jwt.yaml")
    with open(path, "w") as out:
        out.write(_CONFIG_HEAD % creds.SERVICE_NAME + ctx.creds.provider_config() + _NO_API_KEY)
    return path


def _api_key_config(ctx):
    """No `authentication` section and no `usage` rule: every method needs an API key (ESP's
    default), checked by the run's key server and then cached by the proxy."""
    path = os.path.join(ctx.workdir, "echo_api_key.yaml")
    with open(path, "w") as out:
        out.write(_CONFIG_HEAD % creds.SERVICE_NAME)
    return path


# Rows 6: `--jwt-cache-size 0` turns esprit's verified-token cache off, so every call verifies a
# signature whatever the order of tokens. A pool bigger than the cache is not enough with h2load:
# each of its connections walks the same URI list from the first line, so 16 connections send
# token i within a millisecond of each other and 15 of them would hit the entry the first one
# just added (and a TinyLFU cache such as esprit's keeps a share of a cyclic pool resident
# anyway). See bench/README.md.
_NO_CACHE = ("--jwt-cache-size", "0")


def _transcoded_config(ctx):
    """The echo service with an HTTP rule for `Unary` (`GET /v1/echo/{payload}`), no caller
    checks: the transcoded row."""
    path = os.path.join(ctx.workdir, "echo_transcoded.yaml")
    with open(path, "w") as out:
        out.write(_CONFIG_HEAD % creds.SERVICE_NAME + _NO_API_KEY + wire.TRANSCODED_HTTP_RULE)
    return path


HIT_LABEL = "esprit, JWT RS256, one token (cache hit)"
LOG = ", access log"


def all_setups():
    """Every row, in report order. Names are unique within a layout; a row runs in each of its
    `layouts`. The "-log" rows are the access-log pairing: nghttpx with `--accesslog-file`
    against esprit with its default access log; the rows without are nghttpx without one against
    esprit with `RUST_LOG=warn`."""
    both = ("pinned", "sidecar")
    return [
        Setup("direct", "direct (no proxy)", _direct, layouts=both),
        # Not in the 10 000-calls-in-flight run: nginx holds one upstream connection per call in
        # flight, so the run opens 10 000 backend connections at once, and in one of two trials
        # 186 of 20 000 calls failed with HTTP 5xx; a run with failed calls is not a result.
        Setup("nginx", "nginx grpc_pass", _nginx, peer=True),
        Setup("nghttpx", "nghttpx", _nghttpx(), peer=True, many_streams=True,
              layouts=ALL_LAYOUTS),
        Setup("nghttpx-log", "nghttpx" + LOG, _nghttpx(access_log=True), peer=True,
              layouts=ALL_LAYOUTS, access_log=True),
        Setup("esprit-open", "esprit, no authentication rule", _esprit("echo_open.yaml"),
              esprit=True, many_streams=True, layouts=both, guard="nghttpx"),
        Setup("esprit-open-log", "esprit, no authentication rule" + LOG,
              _esprit("echo_open.yaml", access_log=True), esprit=True, layouts=both,
              guard="nghttpx-log", access_log=True),
        Setup("esprit-jwt-rs256-hit", HIT_LABEL, _esprit(_jwt_config), esprit=True,
              many_streams=True, layouts=ALL_LAYOUTS, guard="nghttpx"),
        Setup("esprit-jwt-rs256-hit-log", HIT_LABEL + LOG,
              _esprit(_jwt_config, access_log=True), esprit=True, layouts=ALL_LAYOUTS,
              guard="nghttpx-log", access_log=True),
        # The two-core layout's reference for esprit's own scaling (two workers ≥ 1.6× one).
        Setup("esprit-jwt-rs256-hit-1w", HIT_LABEL + ", one worker",
              _esprit(_jwt_config, threads=1), esprit=True, layouts=("two-core",)),
        Setup("esprit-jwt-rs256-miss", "esprit, JWT RS256, new token every call (cache off)",
              _esprit(_jwt_config, _NO_CACHE), esprit=True, pool="RS256"),
        Setup("esprit-jwt-es256-miss", "esprit, JWT ES256, new token every call (cache off)",
              _esprit(_jwt_config, _NO_CACHE), esprit=True, pool="ES256"),
        Setup("esprit-api-key", "esprit, API key (check cached)",
              _esprit(_api_key_config, ("--service-control-url", "")), esprit=True,
              guard="nghttpx"),
        # nghttpx does neither gRPC-Web nor transcoding: these compare with esprit's plain gRPC.
        Setup("esprit-grpc-web", "esprit, gRPC-Web (binary), no authentication rule",
              _esprit("echo_open.yaml"), esprit=True, kind="grpc-web", compare="esprit-open"),
        Setup("esprit-transcoded", "esprit, HTTP/JSON `GET /v1/echo/…` (transcoded), no "
              "authentication rule", _esprit(_transcoded_config), esprit=True, kind="http-json",
              compare="esprit-open"),
    ]
