"""The set-ups measured side by side: what sits between h2load and the echo backend.

Each row starts its own echo backend, so no set-up inherits another's connections or memory.
Rows with `enabled=False` are part of the table but not run yet; `why_disabled` says what they
wait for, and the report lists them.
"""

import os
import shutil

from . import creds
from .procs import HarnessError, Proc, free_port, wait_for_port


class Setup:
    def __init__(self, name, label, start, peer=False, esprit=False, enabled=True, why="",
                 many_streams=True, pool=None):
        self.name = name
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
    proc = Proc("nginx-" + ctx.tag, [shutil.which("nginx") or "nginx", "-c", conf, "-p", work],
                ctx.layout.proxy, ctx.workdir)
    wait_for_port(port, proc.popen)
    return proc, port


def _nghttpx(ctx, backend_port):
    port = free_port()
    conf = os.path.join(ctx.workdir, "nghttpx.conf")
    _render(
        os.path.join(ctx.bench_dir, "configs", "nghttpx.conf.in"),
        conf,
        {"WORKERS": ctx.layout.proxy_threads, "WORK": ctx.workdir, "PORT": port,
         "BACKEND_PORT": backend_port},
    )
    proc = Proc("nghttpx-" + ctx.tag, [shutil.which("nghttpx") or "nghttpx", "--conf=" + conf],
                ctx.layout.proxy, ctx.workdir)
    wait_for_port(port, proc.popen)
    return proc, port


def _esprit(config, extra_args=()):
    """`config`: a file in bench/configs, or a function of the context writing one and
    returning its path (configs naming the run's key server)."""

    def start(ctx, backend_port):
        port = free_port()
        if callable(config):
            config_path = config(ctx)
        else:
            config_path = os.path.join(ctx.bench_dir, "configs", config)
        # ctx.wrapper: a command the proxy runs under (harness.ab: valgrind), else empty.
        argv = list(ctx.wrapper) + [
            ctx.bins["esprit"], "proxy",
            "--service-config", config_path,
            "--descriptor", os.path.join(ctx.repo_dir, "crates", "echo", "proto", "echo.proto"),
            "--backend", "grpc://127.0.0.1:%d" % backend_port,
            "--listen", "127.0.0.1:%d" % port,
            "--worker-threads", str(ctx.layout.proxy_threads),
        ] + list(extra_args)
        if "--service-control-url" in extra_args:
            argv[argv.index("--service-control-url") + 1] = ctx.creds.url
        # Fairness: warn hides esprit's per-call access-log line, as `access_log off` does for
        # nginx (nghttpx logs no access unless told to).
        proc = Proc("esprit-" + ctx.tag, argv, ctx.layout.proxy, ctx.workdir,
                    env={"RUST_LOG": "warn"})
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


def all_setups():
    return [
        Setup("direct", "direct (no proxy)", _direct),
        # Not in the 10 000-calls-in-flight run: nginx holds one upstream connection per call in
        # flight, so the run opens 10 000 backend connections at once, and in one of two trials
        # 186 of 20 000 calls failed with HTTP 5xx; a run with failed calls is not a result.
        Setup("nginx", "nginx grpc_pass", _nginx, peer=True, many_streams=False),
        Setup("nghttpx", "nghttpx", _nghttpx, peer=True),
        Setup("esprit-open", "esprit, no authentication rule", _esprit("echo_open.yaml"),
              esprit=True),
        Setup("esprit-jwt-rs256-hit", "esprit, JWT RS256, one token (cache hit)",
              _esprit(_jwt_config), esprit=True),
        Setup("esprit-jwt-rs256-miss", "esprit, JWT RS256, new token every call (cache off)",
              _esprit(_jwt_config, _NO_CACHE), esprit=True, pool="RS256"),
        Setup("esprit-jwt-es256-miss", "esprit, JWT ES256, new token every call (cache off)",
              _esprit(_jwt_config, _NO_CACHE), esprit=True, pool="ES256"),
        Setup("esprit-api-key", "esprit, API key (check cached)",
              _esprit(_api_key_config, ("--service-control-url", "")), esprit=True),
    ]
