#!/usr/bin/env bash
# The esprit benchmark: direct, nginx, nghttpx and esprit side by side on loopback.
#
#   bench/run.sh [--quick] [--no-install] [--bin-dir DIR] [--only NAME,...] [--keep-workdir]
#                [--layout pinned,sidecar,two-core] [--rounds N]
#                [--no-criterion] [--no-callgrind] [--results DIR] [--compare-bin-dir DIR]
#
# Installs what it needs when missing (Debian: nginx, nghttp2-client for h2load and nghttp,
# nghttp2-proxy for nghttpx, valgrind for instructions per call, linux-perf for perf's per-call
# counts; needs root), builds release
# binaries (`cargo build --release -p esprit -p esprit-echo` into $CARGO_TARGET_DIR, default
# $HOME/.cache/esprit-target) unless --bin-dir names a
# directory holding `esprit` and `echo-server`, runs bench/harness, which writes
# bench/results/latest.md and latest.json (--quick: bench/results/quick/), then, in full mode,
# the criterion micro-benchmark of the authentication decision (`cargo bench -p esprit-authn --bench
# decision`; --no-criterion skips it), whose numbers are added to the same report.
# The token pools are minted with the project's Python venv (scripts/python-env.sh: PyJWT).
#
# --layout: the core layouts to run (default: all this machine allows): pinned (the proxy alone
# on a core), sidecar (proxy and backend share a core), two-core (no pinning, two workers).
# --rounds N: times every row is measured (default 3; --quick 1); ratios carry their spread.
# Then the proxies of the pinned layout run under valgrind's callgrind for their user-space
# instructions per call (harness/callgrind.py; --quick: nghttpx and the JWT cache-hit row only,
# few calls); --no-callgrind skips this.
# --quick: a smoke run of about a minute (what CI runs). Exits non-zero on a missing tool, a build
# failure, a set-up that does not start, or any failed call, in either mode; --quick also when
# esprit's CPU per call exceeds 3.5x nghttpx's (the regression guard, harness/targets.py).
# --compare-bin-dir DIR: instead, an A/B of this build against the esprit in DIR by counts per
# call (callgrind instructions, perf stat syscalls and context switches; bench/harness/ab.py),
# which a busy machine does not move; writes results/ab/ab.{json,md}. Needs valgrind and perf.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

quick=()
install=1
bin_dir=""
results_dir=""
criterion=1
compare_dir=""
harness_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick) ;;
        --no-install) install=0 ;;
        --bin-dir) bin_dir="$2"; shift ;;
        --bin-dir=*) bin_dir="${1#*=}" ;;
        --results) results_dir="$2"; shift ;;
        --only) harness_args+=(--only "$2"); shift ;;
        --only=*) harness_args+=(--only "${1#*=}") ;;
        --keep-workdir) harness_args+=(--keep-workdir) ;;
        --layout) harness_args+=(--layout "$2"); shift ;;
        --layout=*) harness_args+=(--layout "${1#*=}") ;;
        --rounds) harness_args+=(--rounds "$2"); shift ;;
        --rounds=*) harness_args+=(--rounds "${1#*=}") ;;
        --no-criterion) criterion=0 ;;
        --no-callgrind) harness_args+=(--no-callgrind) ;;
        --compare-bin-dir) compare_dir="$2"; shift ;;
        --compare-bin-dir=*) compare_dir="${1#*=}" ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

# The 10 000-stream run holds about 10 100 sockets in one process (nginx: one upstream connection
# per call in flight); raise the soft descriptor limit as far as the hard one allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# nginx and nghttpx live in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

# tool -> Debian package
declare -A package=(
    [h2load]=nghttp2-client [nghttp]=nghttp2-client [nghttpx]=nghttp2-proxy [nginx]=nginx
    [taskset]=util-linux [python3]=python3 [valgrind]=valgrind [callgrind_control]=valgrind
)
missing=()
for tool in "${!package[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "bench/run.sh: missing packages: ${missing[*]} (install them, or run as root on" \
            "Debian/Ubuntu without --no-install)" >&2
        exit 1
    fi
    for tool in "${!package[@]}"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "bench/run.sh: $tool still missing after installing ${package[$tool]}" >&2
            exit 1
        fi
    done
fi
# perf gives the per-call counts (syscalls, context switches, instructions); without it, or where
# the kernel refuses, the report shows "—" with the reason, and the run goes on.
if ! perf version >/dev/null 2>&1 && [ "$install" = 1 ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
    echo "installing linux-perf" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf; } >/dev/null 2>&1 \
        || echo "bench/run.sh: linux-perf not installed; per-call counts will read —" >&2
fi

if [ -z "$bin_dir" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/esprit-target}"
    echo "building release binaries into $CARGO_TARGET_DIR" >&2
    cargo build --release --locked -p esprit -p esprit-echo
    bin_dir="$CARGO_TARGET_DIR/release"
fi

if [ -n "$compare_dir" ]; then
    for tool in valgrind callgrind_control perf; do
        command -v "$tool" >/dev/null 2>&1 || { echo "bench/run.sh: --compare-bin-dir needs $tool" >&2; exit 1; }
    done
    export PYTHONPATH="$repo/bench${PYTHONPATH:+:$PYTHONPATH}"
    ab_args=(--bin-dir "$bin_dir" --compare-bin-dir "$compare_dir"
             --command "bench/run.sh${quick[*]:+ ${quick[*]}} --compare-bin-dir DIR")
    [ -n "$results_dir" ] && ab_args+=(--results "$results_dir")
    # --only NAME,...: the esprit rows to compare (default: no authentication, JWT cache hit).
    for ((i = 0; i < ${#harness_args[@]}; i++)); do
        [ "${harness_args[$i]}" = --only ] && ab_args+=(--only "${harness_args[$((i + 1))]}")
        [ "${harness_args[$i]}" = --keep-workdir ] && ab_args+=(--keep-workdir)
    done
    exec python3 -m harness.ab "${ab_args[@]}" ${quick[@]+"${quick[@]}"}
fi

# Where the harness writes (a quick run never overwrites the full run's results).
if [ -z "$results_dir" ]; then
    results_dir="$repo/bench/results${quick[*]:+/quick}"
fi
harness_args+=(--results "$results_dir")

# The venv's python (last line of the script's stdout) mints the token pools with PyJWT.
venv_python="$(scripts/python-env.sh | tail -n 1)"
harness_args+=(--python "$venv_python")

# The authentication decision alone, next to bare signature verification (criterion). Full mode
# only: it takes about two minutes; --quick keeps to seconds. Built now, run after the h2load
# measurements (so they start with no benchmark of ours loading the machine), pinned where the
# proxy runs.
run_criterion=0
if [ ${#quick[@]} -eq 0 ]; then
    # The build above (and any teammate's) loads the machine: let it settle before measuring.
    harness_args+=(--wait-quiet "${BENCH_WAIT_QUIET:-300}")
fi
if [ ${#quick[@]} -eq 0 ] && [ "$criterion" = 1 ]; then
    run_criterion=1
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/esprit-target}"
    cargo bench --locked -p esprit-authn --bench decision --no-run >&2
fi

export PYTHONPATH="$repo/bench${PYTHONPATH:+:$PYTHONPATH}"
if [ ${#quick[@]} -gt 0 ]; then
    # The harness's own checks (that failed gRPC calls are caught), so the smoke run cannot rot.
    ECHO_BIN="$bin_dir/echo-server" python3 -m unittest -q harness.test_harness
fi
python3 -m harness \
    --bin-dir "$bin_dir" --command "bench/run.sh${quick[*]:+ ${quick[*]}}" "${quick[@]}" \
    ${harness_args[@]+"${harness_args[@]}"}

if [ "$run_criterion" = 1 ]; then
    since="$(date +%s)"
    echo "running cargo bench -p esprit-authn --bench decision" >&2
    taskset -c "${BENCH_PROXY_CPUS:-0}" cargo bench --locked -p esprit-authn --bench decision >&2
    # Only this run's estimates are read (criterion keeps earlier runs' files).
    python3 -m harness.finish --results "$results_dir" \
        --criterion-dir "$CARGO_TARGET_DIR/criterion" --criterion-since "$since"
fi
