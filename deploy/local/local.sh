#!/usr/bin/env bash
# The one entry point of the local topology (deploy/k8s as processes on this machine):
#
#   deploy/local/local.sh up             # start it (up.sh: PostgreSQL, 2 key servers, 2 backends, 3 proxies)
#   deploy/local/local.sh status         # each process: running or not, ready or not; exit 0 when all are
#   deploy/local/local.sh down [--keep]  # stop it (down.sh: proxies drain first; removes the directory)
#
# The environment variables are up.sh's (ESPRIT_LOCAL_DIR, ESPRIT_LOCAL_BASE_PORT, …); `status`
# and `down` need only ESPRIT_LOCAL_DIR, when up ran with one. `status` exits 0 when every
# process runs and is ready, 3 when the topology is not running or a part of it is down or not
# ready (the LSB status code of a service that is not running).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${ESPRIT_LOCAL_DIR:-${TMPDIR:-/tmp}/esprit-local}

usage() {
    echo "usage: deploy/local/local.sh up | status | down [--keep]" >&2
    exit 2
}

# shellcheck source=deploy/local/lib.sh
. "$here/lib.sh"

# Whether NAME says it is ready, as recorded by up.sh in $dir/health: "ready", or why not.
readiness() {
    local kind target
    read -r kind target < <(awk -v n="$1" '$1 == n {print $2, $3}' "$dir/health" 2>/dev/null) || true
    case ${kind:-} in
    http)
        local code
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$target" 2>/dev/null) || true
        if [ "$code" = 200 ]; then echo ready; else echo "not ready (/readyz: ${code:-no answer})"; fi
        ;;
    grpc)
        if "$(cat "$dir/bin")/bookstore-client" --port "$target" --timeout 2 health >/dev/null 2>&1; then
            echo ready
        else
            echo "not ready (grpc.health.v1: not SERVING)"
        fi
        ;;
    *) echo ready ;;
    esac
}

status() {
    if [ ! -s "$dir/pids" ]; then
        echo "local: not running ($dir/pids does not exist)"
        return 3
    fi
    local all=0 name pid state
    if [ -x "$dir/pg_ctl" ]; then
        if "$dir/pg_ctl" status >/dev/null 2>&1; then
            printf '%-12s %-8s %s\n' postgres - "running"
        else
            printf '%-12s %-8s %s\n' postgres - "stopped"
            all=3
        fi
    fi
    while read -r name pid; do
        if running "$pid"; then
            state=$(readiness "$name")
            [ "$state" = ready ] || all=3
            state="running, $state"
        else
            state=stopped
            all=3
        fi
        printf '%-12s %-8s %s\n' "$name" "$pid" "$state"
    done <"$dir/pids"
    return $all
}

case ${1:-} in
up)
    [ $# -eq 1 ] || usage
    exec "$here/up.sh"
    ;;
down)
    shift
    exec "$here/down.sh" "$@"
    ;;
status)
    [ $# -eq 1 ] || usage
    status
    ;;
*) usage ;;
esac
