"""The run's real credentials: a service account with an RS256 and an ES256 key, an API key, the
key server (`esprit iam serve`) that publishes the public keys and answers API-key checks, one
token for the fixed `authorization` header, and pools of distinct tokens.

Everything is made fresh in the work dir with esprit's own commands, once per run, so every
set-up carries the same valid bearer token and the same valid API key (rows that check neither
forward them untouched: identical bytes everywhere).
"""

import os
import subprocess
import time

from .procs import HarnessError, Proc

# The service name in every generated config, and so the tokens' audience (ESP's default: a
# provider without `audiences` accepts the service name).
SERVICE_NAME = "echo.esprit.example"
PROJECT = "bench-project"
ACCOUNT = "bench-client"
# Long enough for a full run; tokens are minted at the start of the run.
TOKEN_LIFETIME_S = 4 * 3600


def _run(argv, what):
    proc = subprocess.run(argv, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise HarnessError("%s failed (exit %d): %s" % (
            what, proc.returncode, proc.stderr.decode("utf-8", "replace").strip()[-400:]))
    return proc.stdout.decode("utf-8", "replace")


class Credentials:
    """Created by `create`; `stop` ends the key server."""

    def __init__(self, esprit, python, workdir, cpus):
        self.esprit = esprit
        self.python = python
        self.dir = os.path.join(workdir, "iam")
        os.makedirs(self.dir, exist_ok=True)
        self.store = os.path.join(self.dir, "store.db")
        self.cpus = cpus
        self.server = None
        self.url = None
        self.email = None
        self.key_files = {}
        self.api_key = None
        self.token = None
        self.pools = {}
        self.mint_seconds = {}

    def _iam(self, *args):
        return _run([self.esprit, "iam", "--store", self.store] + list(args),
                    "esprit iam " + args[0] + " " + args[1])

    def create(self):
        self.email = self._iam("accounts", "create", ACCOUNT, "--project", PROJECT).strip()
        for alg in ("RS256", "ES256"):
            path = os.path.join(self.dir, "key-%s.json" % alg.lower())
            self._iam("keys", "create", self.email, "--out", path, "--algorithm", alg)
            self.key_files[alg] = path
        self.api_key = self._iam("api-keys", "create", "--project", PROJECT).strip()
        # The key server: pinned with the backend (it answers a few requests at set-up start:
        # each proxy fetches the key set once, and checks the API key once, then caches both).
        self.server = Proc("esprit-iam", [self.esprit, "iam", "--store", self.store, "serve",
                                          "--listen", "127.0.0.1:0"], self.cpus, self.dir)
        self.url = self.server.first_stdout_line()
        if not self.url.startswith("http://"):
            raise HarnessError("esprit iam serve printed %r, not a URL" % self.url)
        self.token = _run([self.esprit, "token", "--key-file", self.key_files["RS256"],
                           "--audiences", SERVICE_NAME], "esprit token").strip()
        return self

    @property
    def jwks_uri(self):
        return "%s/service_accounts/v1/jwk/%s" % (self.url, self.email)

    def pool(self, alg, count):
        """The path of a file of `count` distinct valid tokens signed with the `alg` key."""
        if alg in self.pools:
            return self.pools[alg]
        if not self.python:
            raise HarnessError("token pools need the project's Python (--python, from "
                               "scripts/python-env.sh) with PyJWT")
        path = os.path.join(self.dir, "pool-%s.txt" % alg.lower())
        mint = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mint.py")
        start = time.monotonic()
        _run([self.python, mint, self.key_files[alg], SERVICE_NAME, str(count),
              str(TOKEN_LIFETIME_S), path], "minting %d %s tokens" % (count, alg))
        self.mint_seconds[alg] = time.monotonic() - start
        with open(path) as f:
            tokens = f.read().split()
        if len(tokens) != count or len(set(tokens)) != count or len(set(map(len, tokens))) != 1:
            raise HarnessError("the %s pool is not %d distinct equal-length tokens" % (alg, count))
        self.pools[alg] = path
        return path

    def provider_config(self):
        """The `authentication` section of the JWT rows' service config."""
        return (
            "authentication:\n"
            "  providers:\n"
            "  - id: bench\n"
            "    issuer: %s\n"
            "    jwks_uri: %s\n"
            "  rules:\n"
            "  - selector: \"*\"\n"
            "    requirements:\n"
            "    - provider_id: bench\n" % (self.email, self.jwks_uri)
        )

    def stop(self):
        if self.server:
            self.server.stop()
