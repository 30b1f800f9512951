#!/usr/bin/env bash
# Wire-compatibility test: Python stubs generated from the frozen baseline.proto
# talk to the real server binary, as the clients in use do. Sets up the venv
# (scripts/python-env.sh), then runs pytest on tests/compat from the repo root.
#
# The server binary is $TREESTORE_BIN (default target/debug/treestore: build it
# first). Extra arguments go to pytest (for example -k search, -x, -v).
# Ends with one line totalling the run: "compat: N passed, M failed".
set -euo pipefail
if [[ -n "${TREESTORE_BIN:-}" && "$TREESTORE_BIN" == */* ]]; then
    TREESTORE_BIN=$(realpath -m "$TREESTORE_BIN") # relative to the caller's directory
fi
cd "$(dirname "$0")/../.."
export TREESTORE_BIN="${TREESTORE_BIN:-$PWD/target/debug/treestore}"

scripts/python-env.sh

report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
target/pyenv/bin/python -m pytest -q tests/compat --junitxml="$report" "$@" || status=$?
target/pyenv/bin/python - "$report" "$status" <<'PY' || true
import sys
import xml.etree.ElementTree as ET

try:
    root = ET.parse(sys.argv[1]).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
except (OSError, ET.ParseError):
    suites = []
count = lambda key: sum(int(s.get(key, 0)) for s in suites)
skipped = count("skipped")
failed = count("failures") + count("errors")
passed = count("tests") - skipped - failed
if sys.argv[2] != "0" and failed == 0:
    failed = 1  # pytest failed outside any test (the server did not start, a usage error)
line = f"compat: {passed} passed, {failed} failed"
print(line + (f", {skipped} skipped" if skipped else ""))
PY
exit "$status"
