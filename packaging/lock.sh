#!/usr/bin/env bash
# Re-pin packaging/constraints.txt to the newest versions pyproject.toml allows: install PropDreamer
# with every extra into a scratch environment and write down what pip chose. Then run the tests
# (bash packaging/test.sh) and commit the two files together.
# Usage: bash packaging/lock.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
TORCH="$(sed -n 's/.*"torch==\([0-9.]*\)".*/\1/p' "$ROOT/packaging/setup_env.sh" | head -1)"  # the one torch pin
python3.11 -m venv "$SCRATCH/venv"
PY="$SCRATCH/venv/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check "torch==$TORCH"
"$PY" -m pip install --quiet --disable-pip-version-check "$ROOT[test,cluster,blender,bench]"
{
    echo "# The exact versions CI last tested (pip constraints: used by packaging/setup_env.sh, the Dockerfile"
    echo "# and serve.bat; they pin what gets installed without adding anything). Regenerate with"
    echo "# bash packaging/lock.sh, run the tests, and commit. torch's local label (+cpu, +cu128) is left"
    echo "# off so that the same pin takes the CUDA build where there is a GPU."
    "$PY" -m pip freeze --disable-pip-version-check --exclude propdreamer | sed 's/^\(torch==[^+]*\)+.*/\1/'
} > "$ROOT/packaging/constraints.txt"
echo "wrote $ROOT/packaging/constraints.txt ($(grep -vc '^#' "$ROOT/packaging/constraints.txt") packages)"
