#!/usr/bin/env bash
# Run the demine test suite from a fresh machine: makes .venv, builds and installs
# demine with its test extras, checks the compiled core loads, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k recording).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_venv.sh" "[test]"
cd "$ROOT"
# the same property-test examples on every run (tests/conftest.py)
export DEMINE_HYPOTHESIS_PROFILE="${DEMINE_HYPOTHESIS_PROFILE:-ci}"
exec "$VENV/bin/python" -m pytest "$@"
