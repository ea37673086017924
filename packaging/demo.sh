#!/usr/bin/env bash
# README command 1: set up .venv and run the main job on the builtin prior (offline, CPU is fine).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source packaging/setup_env.sh
OUT="${OUT:-$ROOT/out/demo}"
propdreamer distill2d "a red cube, front view" --out "$OUT" --prior builtin "$@"
echo "Done: open $OUT/distilled.png (result) and $OUT/progress.png (how it got there)."
