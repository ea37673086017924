#!/usr/bin/env bash
# The type checker (mypy, configured in pyproject.toml [tool.mypy]) over PropDreamer's packages as
# they are installed: core/ and server/ are propdreamer.core and propdreamer.server (pyproject.toml's
# package-dir), which mypy cannot see through the editable install's import hook, so it reads them
# through a tree of links with the installed names. Run by packaging/test.sh; by hand:
#   bash packaging/typecheck.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TREE="$(mktemp -d)"
trap 'rm -rf "$TREE"' EXIT
mkdir "$TREE/propdreamer"
ln -s "$ROOT/core" "$TREE/propdreamer/core"
ln -s "$ROOT/server" "$TREE/propdreamer/server"
ln -s "$ROOT/blender_addon/propdreamer_blender" "$TREE/propdreamer_blender"
cd "$TREE"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
"$PY" -m mypy --config-file "$ROOT/pyproject.toml" --cache-dir "$ROOT/.cache/mypy" -p propdreamer.core -p propdreamer.server -p propdreamer_blender
