#!/usr/bin/env bash
# README command 1: set up .venv and run the main job on the builtin prior (offline, CPU is fine):
# prompt -> NeRF -> DMTet mesh -> texture -> out/demo/red_cube.glb (+ red_cube_preview.png).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source packaging/setup_env.sh
OUT="${OUT:-$ROOT/out/demo}"
propdreamer generate "a red cube" -o "$OUT/red_cube.glb" --preset draft --prior builtin "$@"
echo "Done: import $OUT/red_cube.glb into Blender (File > Import > glTF 2.0); the turntable preview is $OUT/red_cube_preview.png."
