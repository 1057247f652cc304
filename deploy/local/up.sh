#!/usr/bin/env bash
# The topology of deploy/k8s as processes on this machine, for trying the cluster without a
# cluster: PostgreSQL, two key servers (`esprit iam serve`) on it, two Bookstore backends and
# three proxies, each proxy checking API keys with both key servers and authenticating those
# checks with its service-account key. Everything listens on 127.0.0.1; everything it makes
# (store, keys, logs, pids) is in one directory. Usually run as `deploy/local/local.sh up`
# (`local.sh status`, `local.sh down`); stop it with deploy/local/down.sh.
#
#   deploy/local/up.sh            # from anywhere; builds the release binaries if needed
#
# Environment:
#   ESPRIT_LOCAL_DIR        its directory (default ${TMPDIR:-/tmp}/esprit-local)
#   ESPRIT_LOCAL_BASE_PORT  ports are numbered from it (default 18000; see the table printed)
#   ESPRIT_LOCAL_STORE      postgres (default) or sqlite: one SQLite file instead of PostgreSQL
#   ESPRIT_BIN_DIR          where esprit, bookstore-server and bookstore-client are (default:
#                           `cargo build --release` of this repository, then its target/release)
#   ESPRIT_LOCAL_PROXY_FLAGS  more flags for every proxy, split on spaces (e.g.
#                           "--api-key-cache-duration 2s"; default none)
#
# PostgreSQL comes from Debian's `postgresql` package (15 or later: apt-get install postgresql);
# it runs as the caller, or as the `postgres` user when the caller is root (PostgreSQL refuses
# root), with a random password, on a loopback port.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${ESPRIT_LOCAL_DIR:-${TMPDIR:-/tmp}/esprit-local}
base=${ESPRIT_LOCAL_BASE_PORT:-18000}
store_kind=${ESPRIT_LOCAL_STORE:-postgres}
read -r -a proxy_flags <<<"${ESPRIT_LOCAL_PROXY_FLAGS:-}"

say() { echo "local: $*" >&2; }
die() {
    say "$*"
    exit 1
}

if ! [[ $base =~ ^[0-9]+$ ]] || [ "$base" -lt 1024 ] || [ "$base" -gt 65000 ]; then
    die "ESPRIT_LOCAL_BASE_PORT must be a number from 1024 to 65000, not '$base'"
fi

project=my-project
service=bookstore.endpoints.$project.cloud.goog
proxy_account=esprit-proxy@$project.iam.gserviceaccount.com
client_account=bookstore-client@$project.iam.gserviceaccount.com

proxy_ports=($((base + 1)) $((base + 2)) $((base + 3)))
proxy_admin_ports=($((base + 101)) $((base + 102)) $((base + 103)))
backend_ports=($((base + 11)) $((base + 12)))
iam_ports=($((base + 21)) $((base + 22)))
iam_admin_ports=($((base + 121)) $((base + 122)))
pg_port=$((base + 432))

case $store_kind in
postgres | sqlite) ;;
*) die "ESPRIT_LOCAL_STORE must be postgres or sqlite, not '$store_kind'" ;;
esac
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

if [ -e "$dir/pids" ]; then
    die "$dir holds a running topology (or a stale one): run deploy/local/local.sh down first"
fi

if [ -z "${ESPRIT_BIN_DIR:-}" ]; then
    say "building the release binaries (cargo build --release -p esprit -p esprit-bookstore)"
    (cd "$root" && cargo build --release --locked -p esprit -p esprit-bookstore >&2)
    bin="${CARGO_TARGET_DIR:-$root/target}/release"
else
    bin=$ESPRIT_BIN_DIR
fi
for b in esprit bookstore-server bookstore-client; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing"
done
esprit=$bin/esprit

rm -rf "$dir"
mkdir -p "$dir/logs"
chmod 0711 "$dir"
: >"$dir/pids"
: >"$dir/health"
echo "$bin" >"$dir/bin"

# If anything below fails, stop what was started.
on_exit() {
    local status=$?
    if [ $status -ne 0 ]; then
        say "failed; stopping what was started"
        ESPRIT_LOCAL_DIR="$dir" "$root/deploy/local/down.sh" --keep >&2 || true
        say "logs: $dir/logs"
    fi
}
trap on_exit EXIT

# Starts NAME COMMAND… in the background, its output in logs/NAME.log, its pid in pids.
start() {
    local name=$1
    shift
    "$@" >"$dir/logs/$name.log" 2>&1 &
    echo "$name $!" >>"$dir/pids"
}

# Records how `local.sh status` asks NAME whether it is ready: KIND `http` (TARGET: its admin
# /readyz URL) or `grpc` (TARGET: the port of its grpc.health.v1 service).
health() {
    echo "$1 $2 $3" >>"$dir/health"
}

# Waits until URL answers 200 (a server's /readyz), or fails naming the log to read.
wait_ready() {
    local name=$1 url=$2
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$(awk -v n="$name" '$1 == n {print $2}' "$dir/pids")" 2>/dev/null; then
            die "$name exited; see $dir/logs/$name.log"
        fi
        sleep 0.1
    done
    die "$name is not ready at $url after 30 s; see $dir/logs/$name.log"
}

# --- the store --------------------------------------------------------------------------------
if [ "$store_kind" = postgres ]; then
    pgbin=""
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pgbin=$(pg_config --bindir)
    else
        for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
            if [ -x "$candidate/initdb" ]; then
                pgbin=$candidate
                break
            fi
        done
    fi
    [ -n "$pgbin" ] || die "no PostgreSQL server binaries (initdb); apt-get install postgresql, or ESPRIT_LOCAL_STORE=sqlite"

    as_pg=()
    if [ "$(id -u)" = 0 ]; then
        as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
    mkdir -p "$dir/pg"
    printf '%s\n' "$password" >"$dir/pg/pwfile"
    if [ ${#as_pg[@]} -gt 0 ]; then
        chown -R postgres: "$dir/pg"
    fi
    chmod 0700 "$dir/pg"
    if [ ${#as_pg[@]} -gt 0 ] && ! "${as_pg[@]}" test -x "$dir/pg"; then
        die "the postgres user cannot reach $dir/pg: every directory above it must be searchable (chmod o+x), or choose another ESPRIT_LOCAL_DIR"
    fi
    chmod 0600 "$dir/pg/pwfile"
    say "PostgreSQL ($pgbin) on 127.0.0.1:$pg_port"
    pg_options="-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories='$dir/pg/run'"
    (cd / && "${as_pg[@]}" "$pgbin/initdb" --pgdata="$dir/pg/data" --username=esprit \
        --pwfile="$dir/pg/pwfile" --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        >"$dir/logs/postgres-initdb.log" 2>&1) || die "initdb failed; see $dir/logs/postgres-initdb.log"
    "${as_pg[@]}" rm -f "$dir/pg/pwfile"
    "${as_pg[@]}" mkdir -p "$dir/pg/run"
    (cd / && "${as_pg[@]}" "$pgbin/pg_ctl" start --pgdata="$dir/pg/data" --wait --timeout=60 \
        --log="$dir/pg/server.log" \
        --options="$pg_options" \
        >&2) || die "PostgreSQL did not start; see $dir/pg/server.log"
    echo "$pgbin" >"$dir/pg-bindir"
    # $dir/pg_ctl stop|start|restart|status …: this server's pg_ctl, as its owner, with its
    # options (port, socket, log), e.g. `$dir/pg_ctl restart --mode=fast`.
    {
        echo '#!/bin/sh'
        printf 'cd / && exec %s %q "$@" --pgdata=%q --log=%q --options=%q\n' "${as_pg[*]:-}" \
            "$pgbin/pg_ctl" "$dir/pg/data" "$dir/pg/server.log" "$pg_options"
    } >"$dir/pg_ctl"
    chmod 0755 "$dir/pg_ctl"
    PGPASSWORD=$password "$pgbin/createdb" --host=127.0.0.1 --port="$pg_port" --username=esprit esprit
    store="postgres://esprit:$password@127.0.0.1:$pg_port/esprit"
else
    store="$dir/iam.db"
fi
printf 'export ESPRIT_IAM_STORE=%q\n' "$store" >"$dir/env"
chmod 0600 "$dir/env"
export ESPRIT_IAM_STORE=$store

# --- accounts, keys, roles (what the cluster's operator does once through a port-forward) ------
"$esprit" iam migrate >&2
"$esprit" iam kek generate --out "$dir/kek" >/dev/null 2>&1
"$esprit" iam accounts create esprit-proxy --project $project >/dev/null
"$esprit" iam keys create $proxy_account --out "$dir/proxy-key.json" >/dev/null
"$esprit" iam roles grant --member serviceAccount:$proxy_account \
    --role roles/servicemanagement.serviceController --resource services/$service >/dev/null
"$esprit" iam accounts create bookstore-client --project $project >/dev/null
"$esprit" iam keys create $client_account --out "$dir/client-key.json" >/dev/null
"$esprit" iam api-keys create --project $project --name local >"$dir/api-key"
chmod 0600 "$dir/api-key"

# The service config of deploy/k8s/bookstore-config.yaml, with the local key server's address.
cat >"$dir/api_config.yaml" <<EOF
type: google.api.Service
config_version: 3
name: $service
title: Bookstore gRPC API
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: google_service_account
    issuer: $client_account
    jwks_uri: http://127.0.0.1:${iam_ports[0]}/robot/v1/metadata/x509/$client_account
  rules:
  - selector: "*"
    requirements:
    - provider_id: google_service_account
usage:
  rules:
  - selector: endpoints.examples.bookstore.Bookstore.ListShelves
    allow_unregistered_calls: true
EOF
"$esprit" config check --service-config "$dir/api_config.yaml" \
    --descriptor "$root/examples/bookstore/proto/bookstore.proto" >/dev/null

# --- key servers --------------------------------------------------------------------------------
for i in 0 1; do
    start "iam-$((i + 1))" "$esprit" iam serve --listen 127.0.0.1:"${iam_ports[$i]}" \
        --admin-listen 127.0.0.1:"${iam_admin_ports[$i]}" --store-pool-size 4 \
        --issuer-url http://127.0.0.1:"${iam_ports[0]}" --kek-file "$dir/kek" --check-auth required
done
for i in 0 1; do
    health "iam-$((i + 1))" http "http://127.0.0.1:${iam_admin_ports[$i]}/readyz"
    wait_ready "iam-$((i + 1))" "http://127.0.0.1:${iam_admin_ports[$i]}/readyz"
done

# --- backends -------------------------------------------------------------------------------------
for i in 0 1; do
    start "bookstore-$((i + 1))" "$bin/bookstore-server" --host 127.0.0.1 \
        --port "${backend_ports[$i]}" --db :memory:
    health "bookstore-$((i + 1))" grpc "${backend_ports[$i]}"
done

# --- proxies: proxy N forwards to backend (N-1) mod 2 and asks both key servers ------------------
for i in 0 1 2; do
    start "proxy-$((i + 1))" "$esprit" proxy --listen 127.0.0.1:"${proxy_ports[$i]}" \
        --backend grpc://127.0.0.1:"${backend_ports[$((i % 2))]}" \
        --service-config "$dir/api_config.yaml" \
        --descriptor "$root/examples/bookstore/proto/bookstore.proto" \
        --service-control-url http://127.0.0.1:"${iam_ports[0]}" \
        --service-control-url http://127.0.0.1:"${iam_ports[1]}" \
        --service-account-key "$dir/proxy-key.json" \
        --health-check-grpc-backend --admin-listen 127.0.0.1:"${proxy_admin_ports[$i]}" \
        ${proxy_flags[@]+"${proxy_flags[@]}"}
done
for i in 0 1 2; do
    health "proxy-$((i + 1))" http "http://127.0.0.1:${proxy_admin_ports[$i]}/readyz"
    wait_ready "proxy-$((i + 1))" "http://127.0.0.1:${proxy_admin_ports[$i]}/readyz"
done

trap - EXIT
api_key=$(cat "$dir/api-key")
pg_hint=""
if [ "$store_kind" = postgres ]; then
    pg_hint="
  $dir/pg_ctl restart --mode=fast    # PostgreSQL's pg_ctl, with its options"
fi
cat <<EOF
esprit's local topology is up (directory $dir; logs in $dir/logs).

  proxies       127.0.0.1:${proxy_ports[0]} 127.0.0.1:${proxy_ports[1]} 127.0.0.1:${proxy_ports[2]}    admin :${proxy_admin_ports[0]} :${proxy_admin_ports[1]} :${proxy_admin_ports[2]}
  key servers   http://127.0.0.1:${iam_ports[0]} http://127.0.0.1:${iam_ports[1]}    admin :${iam_admin_ports[0]} :${iam_admin_ports[1]}
  backends      127.0.0.1:${backend_ports[0]} 127.0.0.1:${backend_ports[1]} (bookstore-server)
  store         $( [ "$store_kind" = postgres ] && echo "PostgreSQL on 127.0.0.1:$pg_port (URL in $dir/env)" || echo "$store" )

Try it:
  export PATH="$bin:\$PATH"; . $dir/env
  TOKEN=\$(esprit token --key-file $dir/client-key.json --audiences $service)
  bookstore-client --port ${proxy_ports[0]} --auth-token "\$TOKEN" list-shelves
  bookstore-client --port ${proxy_ports[1]} --auth-token "\$TOKEN" --api-key $api_key get-shelf 1
  curl -s http://127.0.0.1:${proxy_admin_ports[2]}/metrics | grep esprit_api_key_checks_total${pg_hint}

Check it: ESPRIT_LOCAL_DIR=$dir $root/deploy/local/local.sh status
Stop it:  ESPRIT_LOCAL_DIR=$dir $root/deploy/local/local.sh down
EOF
