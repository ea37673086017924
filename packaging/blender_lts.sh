#!/usr/bin/env bash
# The Blender LTS releases artists use, besides 5.0 (the add-on declares 4.2 as its minimum in
# blender_manifest.toml): one environment per release, .venv-blender/<version>, holding Blender as a
# module (bpy, from PyPI) and what the add-on's real-Blender tests import there (pyzmq, msgpack, and
# PropDreamer itself without its dependencies: the demo's scene helper reads the request registry).
# Run by packaging/test.sh; tests/test_blender_lts.py runs the add-on's flows in each.
# Usage: bash packaging/blender_lts.sh [VERSION ...]    (default: the versions below)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSIONS=("${@:-4.2.23 4.5.15}")
# The lock without its bpy pin (each environment pins its own release).
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
grep -v '^bpy==' "$ROOT/packaging/constraints.txt" > "$CONSTRAINTS"
for version in ${VERSIONS[@]}; do
    VENV="$ROOT/.venv-blender/$version"
    if [ ! -x "$VENV/bin/python" ]; then
        python3.11 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS" "bpy==$version" pyzmq msgpack
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
done
