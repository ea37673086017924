#!/usr/bin/env bash
# README command 2: set up .venv with the test extra and run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source packaging/setup_env.sh test
bash packaging/gltf_validator.sh >/dev/null   # the Khronos validator the GLB tests run
bash packaging/blender_lts.sh                  # Blender 4.2 and 4.5 LTS beside 5.0, for the add-on's tests
ruff check . && ruff format --check .          # lint and format (pyproject.toml [tool.ruff]); `ruff format .` fixes the format
bash packaging/typecheck.sh                    # types (pyproject.toml [tool.mypy])
python -m pytest "$@"
