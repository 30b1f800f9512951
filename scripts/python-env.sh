#!/usr/bin/env bash
# Creates the Python virtualenv used by the wire-compatibility test (tests/compat)
# at target/pyenv and installs tests/compat/requirements.txt into it.
#
# Idempotent: a stamp file in the venv holds a hash of requirements.txt and of
# the interpreter's version; when both match and the venv's python runs, the
# script exits at once. When either changed, the venv is rebuilt from scratch.
# Silent on success; on failure says what went wrong (and shows pip's output).
#
# The interpreter is `python3` from PATH, or $PYTHON if set. If its venv cannot
# bootstrap pip (Debian without python3-venv, and no root to install it), pip is
# bootstrapped from Debian's pip wheel when there is one; otherwise the script
# says what is missing and how to get it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

python=${PYTHON:-python3}
venv="$root/target/pyenv"
requirements="$root/tests/compat/requirements.txt"
stamp="$venv/.requirements-stamp"

die() {
    echo "python-env.sh: $*" >&2
    exit 1
}

command -v "$python" >/dev/null 2>&1 ||
    die "no '$python' on PATH: install Python 3.10 or newer (or set PYTHON)"
py_version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') ||
    die "'$python' does not run"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "'$python' is Python $py_version; the pinned packages need Python 3.10 or newer"

want="$(sha256sum "$requirements" | cut -d' ' -f1) python-$py_version"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    "$venv/bin/python" -c '' >/dev/null 2>&1; then
    exit 0
fi

# Debian splits ensurepip (venv's pip bootstrap) into python3-venv, which needs
# root to install. Without it, fall back to a venv without pip and run pip
# straight from Debian's pip wheel (python3-pip-whl) to install pip into it.
bootstrap_from_wheel() {
    local wheel
    wheel=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$wheel" ]] || return 1
    rm -rf "$venv"
    "$python" -m venv --without-pip "$venv" >>"$log" 2>&1 &&
        "$venv/bin/python" "$wheel/pip" install --quiet --disable-pip-version-check \
            --no-input "$wheel" >>"$log" 2>&1
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
if ! "$python" -m venv "$venv" >"$log" 2>&1; then
    if ! grep -qi ensurepip "$log"; then
        rm -rf "$venv"
        die "'$python -m venv $venv' failed:
$(cat "$log")"
    fi
    if ! bootstrap_from_wheel; then
        rm -rf "$venv"
        die "'$python -m venv' failed: ensurepip is not available for Python $py_version
(and no pip wheel in /usr/share/python-wheels to bootstrap from).
On Debian/Ubuntu venv's pip bootstrap is a separate package; as root run
    apt-get install python3-venv        (or python${py_version%.*}-venv)
Without root, point PYTHON at an interpreter that has ensurepip (for example one
built by pyenv or uv): PYTHON=/path/to/python3 $0
Output:
$(cat "$log")"
    fi
fi

if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$requirements" >"$log" 2>&1; then
    cat "$log" >&2
    rm -rf "$venv"
    die "pip could not install $requirements (output above)"
fi

echo "$want" >"$stamp"
