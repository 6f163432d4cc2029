#!/usr/bin/env bash
# The main job on a fresh machine: makes .venv, builds and installs demine (with
# matplotlib for the figures), and runs the demo: simulated metal detector, radar
# and RTK tracker on pseudo-terminals, recorded through the real serial path,
# detected, and evaluated against ground truth. Output in ./demine-demo.
# Extra arguments go to `demine demo` (e.g. --scene benign-soil --duration 120).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_venv.sh" "[plot]"
cd "$ROOT"
exec "$VENV/bin/demine" demo "$@"
