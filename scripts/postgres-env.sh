#!/usr/bin/env bash
# Makes sure a PostgreSQL server (Debian's `postgresql` package, 15 or later) is running for
# esprit's tests and prints its URL on stdout (everything else goes to stderr). The URL names the
# `postgres` database as the `postgres` superuser; tests create a database of their own in it.
#
#   directory: ${ESPRIT_PG_DIR:-$HOME/.cache/esprit-postgres}  (data/, run/ = the socket, log)
#   binaries:  `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin
#
# The server listens on a Unix socket in run/ only (no TCP port, so nothing can clash), with
# `trust` authentication: the socket directory is mode 0700, so only its owner (and root) can
# connect. PostgreSQL refuses to run as root: when the caller is root the server runs as the
# unprivileged `postgres` user, and because that user cannot enter root's 0700 home the directory
# then defaults to $TMPDIR/esprit-postgres (/tmp when TMPDIR is unset) instead.
#
# Idempotent: when the server already runs it only checks that it answers. Concurrent runs
# (parallel tests) wait for each other on a lock file beside the directory.
#
#   postgres-env.sh --tls DIR PORT PID
#
# instead starts a server of its own for the TLS tests (testkit's `postgres_tls_server()`): a new
# cluster in DIR/data listening on 127.0.0.1:PORT with `ssl=on` and DIR/server.crt and
# DIR/server.key (written by the caller), where TCP connections must use TLS and log in with a
# password (`hostssl … scram-sha-256`, no `host`/`hostnossl` line: a clear connection is refused),
# and the Unix socket in DIR/run (port PORT) is `trust` for the caller's setup. When process PID
# is gone the server is stopped and DIR removed. It prints `ready` once the server answers; when
# PORT was taken it exits 3 (the caller picks another port and runs it again on the same DIR).
set -euo pipefail

bindir=""
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    bindir=$(pg_config --bindir)
else
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/initdb" ]; then
            bindir=$candidate
            break
        fi
    done
fi
if [ -z "$bindir" ]; then
    echo "postgres-env: no PostgreSQL server binaries (initdb) found; apt-get install postgresql" >&2
    exit 1
fi

as_server=()
if [ "$(id -u)" = 0 ]; then
    dir=${ESPRIT_PG_DIR:-${TMPDIR:-/tmp}/esprit-postgres}
    as_server=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    owner=postgres
else
    dir=${ESPRIT_PG_DIR:-$HOME/.cache/esprit-postgres}
    owner=$(id -un)
fi
if [ "${1:-}" = "--tls" ]; then
    tls_dir=$2 port=$3 watch_pid=$4
    data="$tls_dir/data" run="$tls_dir/run" log="$tls_dir/server.log"
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres "$tls_dir"
    fi
    chmod 0700 "$tls_dir"
    chmod 0600 "$tls_dir/server.key"
    if [ ! -s "$data/PG_VERSION" ]; then
        (cd / && "${as_server[@]}" "$bindir/initdb" --pgdata="$data" --username=postgres \
            --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2)
        "${as_server[@]}" mkdir -p "$run"
        printf '%s\n' 'local all all trust' 'hostssl all all 127.0.0.1/32 scram-sha-256' \
            | "${as_server[@]}" tee "$data/pg_hba.conf" >/dev/null
        # Stops the server and removes the directory once the test process is gone.
        setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
            (cd / && "${@:4}" "$2/pg_ctl" stop --pgdata="$3/data" --mode=immediate) || true
            rm -rf "$3"' watcher "$watch_pid" "$bindir" "$tls_dir" "${as_server[@]}" \
            </dev/null >/dev/null 2>&1 &
    fi
    if ! (cd / && "${as_server[@]}" "$bindir/pg_ctl" start --pgdata="$data" --log="$log" --wait \
        --timeout=60 --options="-c listen_addresses=127.0.0.1 -c port=$port \
        -c unix_socket_directories='$run' -c ssl=on -c ssl_cert_file='$tls_dir/server.crt' \
        -c ssl_key_file='$tls_dir/server.key' -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c max_connections=100 -c shared_buffers=16MB" \
        </dev/null >&2); then
        if grep -q 'Address already in use' "$log" 2>/dev/null; then
            exit 3
        fi
        echo "postgres-env: the TLS server did not start (see $log)" >&2
        cat "$log" >&2 || true
        exit 1
    fi
    echo ready
    exit 0
fi

data="$dir/data"
run="$dir/run"
log="$dir/server.log"

mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9

mkdir -p "$dir"
chown "$owner" "$dir"
chmod 0700 "$dir"

if [ ! -s "$data/PG_VERSION" ]; then
    echo "postgres-env: initdb $data" >&2
    rm -rf "$data"
    (cd / && "${as_server[@]}" "$bindir/initdb" --pgdata="$data" --username=postgres \
        --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2)
fi
"${as_server[@]}" mkdir -p "$run"

if ! (cd / && "${as_server[@]}" "$bindir/pg_ctl" status --pgdata="$data" >/dev/null 2>&1); then
    echo "postgres-env: starting the server (log: $log)" >&2
    # Test settings: no TCP, the socket in run/, durability off (a test database is thrown away),
    # enough connections for parallel tests with their pools. The server must not inherit the
    # lock (fd 9), or it would hold it for as long as it runs.
    start() {
        (cd / && "${as_server[@]}" "$bindir/pg_ctl" start --pgdata="$data" --log="$log" --wait \
            --timeout=60 --options="-c listen_addresses='' -c unix_socket_directories='$run' \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=400 -c shared_buffers=32MB" </dev/null >&2 9>&-)
    }
    if ! start; then
        # Without fsync a crash of the machine may leave the cluster unusable; it only ever holds
        # test databases, so start over.
        echo "postgres-env: the server did not start; making a new cluster" >&2
        rm -rf "$data"
        (cd / && "${as_server[@]}" "$bindir/initdb" --pgdata="$data" --username=postgres \
            --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2)
        start
    fi
fi

for _ in $(seq 1 60); do
    if "$bindir/pg_isready" --host="$run" --username=postgres --dbname=postgres --quiet; then
        echo "postgresql://postgres@/postgres?host=$run"
        exit 0
    fi
    sleep 0.5
done
echo "postgres-env: the server in $data does not answer on $run (see $log)" >&2
exit 1
