#!/usr/bin/env bash
# Runs TreeStore's whole test suite: unit, property, crash-simulation and
# integration tests of every crate (integration tests start the real binary).
# Long campaigns scale with TREESTORE_SCALE=N (crash points) and
# TREESTORE_PROPTEST_CASES=N (model test cases); see docs/architecture.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
