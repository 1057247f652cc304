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
# then defaults to /var/tmp/esprit-postgres instead.
#
# Idempotent: when the server already runs it only checks that it answers. Concurrent runs
# (parallel tests) wait for each other on a lock file beside the directory.
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
    dir=${ESPRIT_PG_DIR:-/var/tmp/esprit-postgres}
    as_server=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    owner=postgres
else
    dir=${ESPRIT_PG_DIR:-$HOME/.cache/esprit-postgres}
    owner=$(id -un)
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
