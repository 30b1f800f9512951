#!/usr/bin/env bash
# Runs TreeStore's whole test suite: unit, property, crash-simulation and
# integration tests of every crate (integration tests start the real binary),
# then the Python wire-compatibility test (tests/compat: stubs from the frozen
# baseline proto against the real server; its virtualenv is set up from PyPI by
# scripts/python-env.sh).
# Long campaigns scale with TREESTORE_SCALE=N (crash points, kill cycles) and
# TREESTORE_PROPTEST_CASES=N (model test cases); see docs/architecture.md.
# Ends with one line totalling everything: "tests: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
cargo build --locked -p treestore-server 2>&1 | tail -n 3 || status=$?
TREESTORE_BIN="$PWD/target/debug/treestore" tests/compat/run.sh 2>&1 | tee -a "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^compat: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
