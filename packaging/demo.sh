#!/usr/bin/env bash
# README command 1: set up .venv (with Blender 5.0 as a Python module) and run the artist's flow on the
# builtin prior, offline and on the CPU: build the extension, start the server, install the extension
# into headless Blender, press Generate for "a red cube", save out/demo/demo.blend, demo.png, demo.glb.
# With a GPU and Stable Diffusion: bash packaging/demo.sh --sd   (other options: python packaging/demo.py -h)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$SECONDS
source packaging/setup_env.sh blender
echo "Set up .venv in $((SECONDS - START)) s"
python packaging/demo.py "$@"
echo "README command 1 took $((SECONDS - START)) s in all"
