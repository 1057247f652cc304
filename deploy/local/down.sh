#!/usr/bin/env bash
# Stops what deploy/local/up.sh started: SIGTERM to the proxies (they drain), the backends and the
# key servers, SIGKILL to whatever still runs 15 s later, then PostgreSQL; then removes the
# directory (store, keys, logs) unless --keep is given.
#
#   deploy/local/down.sh [--keep]
#
# ESPRIT_LOCAL_DIR: the directory up.sh used (default ${TMPDIR:-/tmp}/esprit-local).
set -euo pipefail

dir=${ESPRIT_LOCAL_DIR:-${TMPDIR:-/tmp}/esprit-local}
keep=false
case ${1:-} in
--keep) keep=true ;;
"") ;;
*)
    echo "usage: deploy/local/down.sh [--keep]" >&2
    exit 2
    ;;
esac

if [ ! -d "$dir" ]; then
    echo "local: nothing to stop ($dir does not exist)" >&2
    exit 0
fi

# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Proxies first, so that they drain while their backends and key servers still answer.
pids=()
if [ -f "$dir/pids" ]; then
    for prefix in proxy- bookstore- iam-; do
        while read -r name pid; do
            case $name in
            "$prefix"*)
                if kill -TERM "$pid" 2>/dev/null; then
                    pids+=("$pid")
                fi
                ;;
            esac
        done <"$dir/pids"
        if [ "$prefix" = proxy- ]; then
            # Let the proxies finish in-flight calls (their --drain-timeout is 10 s).
            for _ in $(seq 1 110); do
                alive=false
                for pid in "${pids[@]}"; do
                    running "$pid" && alive=true
                done
                $alive || break
                sleep 0.1
            done
        fi
    done
fi
for _ in $(seq 1 150); do
    alive=()
    for pid in "${pids[@]}"; do
        running "$pid" && alive+=("$pid")
    done
    [ ${#alive[@]} -eq 0 ] && break
    sleep 0.1
done
for pid in "${alive[@]}"; do
    echo "local: process $pid did not stop; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
done

if [ -f "$dir/pg-bindir" ] && [ -d "$dir/pg/data" ]; then
    as_pg=()
    if [ "$(id -u)" = 0 ]; then
        as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    (cd / && "${as_pg[@]}" "$(cat "$dir/pg-bindir")/pg_ctl" stop --pgdata="$dir/pg/data" \
        --mode=fast --wait >&2) || true
fi

rm -f "$dir/pids"
if $keep; then
    echo "local: stopped; $dir kept" >&2
else
    rm -rf "$dir"
    echo "local: stopped; $dir removed" >&2
fi
