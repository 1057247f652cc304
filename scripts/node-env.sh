#!/usr/bin/env bash
# Installs the pinned npm packages of esprit's gRPC-Web interop tests (tests/node/package.json and
# package-lock.json: @connectrpc/connect-node, @connectrpc/connect-web and their peers, and
# esbuild, whose platform binary is an npm package too) outside the clone, and prints the path of
# their node_modules on stdout (everything else goes to stderr).
#
#   directory: ${ESPRIT_NODE_DIR:-$HOME/.cache/esprit-node}
#   node:      the `node`/`npm` on PATH (20 or later)
#
# Idempotent: when the directory was installed from the same lock file (a sha256 stamp inside
# it), it only prints the path. Concurrent runs wait for each other on a lock file beside it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${ESPRIT_NODE_DIR:-$HOME/.cache/esprit-node}
lock="$root/tests/node/package-lock.json"
stamp="$dir/.esprit-lock.sha256"

mkdir -p "$dir"
exec 9>"$dir.lock"
flock 9

want=$(cat "$root/tests/node/package.json" "$lock" | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -d "$dir/node_modules" ]; then
    echo "node-env: installing $lock into $dir" >&2
    cp "$root/tests/node/package.json" "$lock" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
    echo "$want" >"$stamp"
fi

echo "$dir/node_modules"
