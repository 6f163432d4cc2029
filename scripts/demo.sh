#!/usr/bin/env bash
# The main job on a fresh machine: makes .venv, builds and installs demine, and
# runs the demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_venv.sh" ""
cd "$ROOT"
exec "$VENV/bin/demine" --help
