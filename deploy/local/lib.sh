# shellcheck shell=bash
# Shell functions shared by local.sh and down.sh (sourced, not run).

# Whether process PID still runs: a zombie (exited, not yet reaped by whoever adopted it when
# up.sh exited) has stopped.
running() {
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/stat" ]; then
        local stat
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        [ "${stat%% *}" != Z ] || return 1
    fi
    return 0
}
