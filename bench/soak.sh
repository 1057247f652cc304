#!/usr/bin/env bash
# The soak test's long mode: valid, invalid and abusive clients at once against a release build
# of `esprit proxy` (with the real key server and the Bookstore) for SECONDS (default 120).
# Every valid call must succeed, every invalid one must get its own rejection, and the proxy's
# RSS must stay under the bound stated in crates/esprit/tests/soak.rs. CI runs the same test for
# a few seconds on a debug build.
#
#   bench/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/esprit-target}"
ESPRIT_SOAK_SECS="${1:-120}" exec cargo test --release --locked -p esprit --test soak -- --nocapture
