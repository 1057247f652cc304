"""The set-ups measured side by side: what sits between h2load and the echo backend.

Each row starts its own echo backend, so no set-up inherits another's connections or memory.
Rows with `enabled=False` are part of the table but not run yet; `why_disabled` says what they
wait for, and the report lists them.
"""

import os
import shutil

from .procs import HarnessError, Proc, free_port, wait_for_port


class Setup:
    def __init__(self, name, label, start, peer=False, esprit=False, enabled=True, why=""):
        self.name = name
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
        "echo-server",
        [ctx.bins["echo-server"], "--listen", "127.0.0.1:0"],
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
    proc = Proc("nginx", [shutil.which("nginx") or "nginx", "-c", conf, "-p", work],
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
    proc = Proc("nghttpx", [shutil.which("nghttpx") or "nghttpx", "--conf=" + conf],
                ctx.layout.proxy, ctx.workdir)
    wait_for_port(port, proc.popen)
    return proc, port


def _esprit(config_name):
    def start(ctx, backend_port):
        port = free_port()
        argv = [
            ctx.bins["esprit"], "proxy",
            "--service-config", os.path.join(ctx.bench_dir, "configs", config_name),
            "--descriptor", os.path.join(ctx.repo_dir, "crates", "echo", "proto", "echo.proto"),
            "--backend", "grpc://127.0.0.1:%d" % backend_port,
            "--listen", "127.0.0.1:%d" % port,
            "--worker-threads", str(ctx.layout.proxy_threads),
        ]
        # Fairness: warn hides esprit's per-call access-log line, as `access_log off` does for
        # nginx (nghttpx logs no access unless told to).
        proc = Proc("esprit", argv, ctx.layout.proxy, ctx.workdir, env={"RUST_LOG": "warn"})
        wait_for_port(port, proc.popen)
        return proc, port

    return start


_JWT_WAIT = (
    "needs JWT authentication in `esprit proxy` (in progress) and a token minting command; "
    "see bench/README.md, 'Rows not run yet'"
)
_KEY_WAIT = "needs API-key checks in `esprit proxy` (not yet implemented)"


def all_setups():
    return [
        Setup("direct", "direct (no proxy)", _direct),
        Setup("nginx", "nginx grpc_pass", _nginx, peer=True),
        Setup("nghttpx", "nghttpx", _nghttpx, peer=True),
        Setup("esprit-open", "esprit, no authentication rule", _esprit("echo_open.yaml"),
              esprit=True),
        # Rows 5-7: enabled once the features land (configs generated per run: the key set's
        # path is the work dir's, and tokens are minted fresh).
        Setup("esprit-jwt-rs256-cached", "esprit, JWT RS256, one token (cache hit)", None,
              esprit=True, enabled=False, why=_JWT_WAIT),
        Setup("esprit-jwt-rs256-pool", "esprit, JWT RS256, 10 000 tokens + API key (cached)",
              None, esprit=True, enabled=False, why=_JWT_WAIT + "; " + _KEY_WAIT),
        Setup("esprit-jwt-es256-pool", "esprit, JWT ES256, 10 000 tokens + API key (cached)",
              None, esprit=True, enabled=False, why=_JWT_WAIT + "; " + _KEY_WAIT),
    ]
