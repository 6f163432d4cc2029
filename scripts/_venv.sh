# Shared by scripts/test.sh and scripts/demo.sh: make (or reuse) a virtual
# environment and install demine into it from this checkout, as a real wheel
# build (not an editable install), so what runs is what users get.
#   DEMINE_VENV   where the environment lives (default: .venv in the checkout)
#   PYTHON        the interpreter to make it with (default: python3, must be >= 3.11)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DEMINE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "demine needs Python >= 3.11; $PY is $("$PY" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$ROOT$1"
# The compiled core must have built and must load: no silent fallback.
"$VENV/bin/python" -c 'import demine, demine._core; print("demine", demine.__version__, "compiled core:", demine._core.__file__)'
