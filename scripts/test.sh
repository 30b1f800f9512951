#!/usr/bin/env bash
# Runs TreeStore's whole test suite: unit, property, crash-simulation and
# integration tests of every crate (integration tests start the real binary).
# Long campaigns scale with TREESTORE_SCALE=N (crash points, kill cycles) and
# TREESTORE_PROPTEST_CASES=N (model test cases); see docs/architecture.md.
# Ends with one line totalling every test binary: "tests: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
