#!/usr/bin/env bash
# Creates or refreshes the Python virtualenv for esprit's interop tests and prints the path of its
# python on stdout (everything else goes to stderr).
#
#   venv:         ${ESPRIT_PY_VENV:-$HOME/.cache/esprit-venv}
#   requirements: tests/python/requirements.txt
#   interpreter:  ${PYTHON:-python3} (3.11 is what the pins were chosen for)
#
# Idempotent: when the venv exists and was installed from the same requirements file (a sha256
# stamp inside the venv), it only checks that its python runs and prints the path. Concurrent runs
# (parallel tests) wait for each other on a lock file beside the venv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ESPRIT_PY_VENV:-$HOME/.cache/esprit-venv}
requirements="$root/tests/python/requirements.txt"
stamp="$venv/.esprit-requirements.sha256"
base_python=${PYTHON:-python3}

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "python-env: creating $venv with $base_python" >&2
    "$base_python" -m venv --clear "$venv" >&2
    rm -f "$stamp"
fi

want=$(sha256sum "$requirements" | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    echo "python-env: installing $requirements" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --requirement "$requirements" >&2
    echo "$want" >"$stamp"
fi

echo "$venv/bin/python"
