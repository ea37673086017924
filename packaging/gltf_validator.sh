#!/usr/bin/env bash
# Install the Khronos glTF validator (npm package, pinned) into .cache/gltf-validator; the test suite
# runs it on the GLBs PropDreamer writes. Needs Node.js and npm. Prints the path of its CLI wrapper.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.cache/gltf-validator"
if [ ! -d "$PREFIX/node_modules/gltf-validator" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is not installed: install Node.js (https://nodejs.org) to validate GLB files" >&2
        exit 1
    fi
    npm install --silent --no-audit --no-fund --prefix "$PREFIX" gltf-validator@2.0.0-dev.3.10 >&2
fi
echo "$PREFIX"
