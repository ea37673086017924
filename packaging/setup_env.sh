#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv (sourced by demo.sh and test.sh).
# Usage: source packaging/setup_env.sh [EXTRAS]   e.g. "test"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"

find_python() {
    for candidate in python3.11 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            echo "$candidate"; return 0
        fi
    done
    echo "PropDreamer needs Python 3.11 (Blender 5.0's Python); install it and run this again." >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    "$(find_python)" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# torch first, pinned: an unpinned torch pulls several GB of CUDA packages on machines without a
# GPU; on a Linux machine with an NVIDIA driver the same pin installs the CUDA build.
# Every other package at the version CI tested: packaging/constraints.txt (bash packaging/lock.sh
# re-pins it), so a new diffusers or peft release changes nothing here until the lock is updated.
CONSTRAINTS="$ROOT/packaging/constraints.txt"
"$PY" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS" "torch==2.13.0"
SPEC="$ROOT"
[ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
"$PY" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS" -e "$SPEC"
export PATH="$VENV/bin:$PATH"
