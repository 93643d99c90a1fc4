# Shared by scripts/demo and scripts/test: make (or reuse) the virtual environment and install papscreen.
# PAPSCREEN_VENV picks the environment's folder (default .venv); PYTHON picks the interpreter (3.11).
set -euo pipefail

VENV="${PAPSCREEN_VENV:-.venv}"
if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "papscreen needs Python 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

install_papscreen() {  # $1: the extras, e.g. "[dev,keras]" or ""
  echo "==> installing papscreen$1 into $VENV (first time: several minutes, torch is large)"
  "$VENV/bin/python" -m pip install -q -e ".$1"
}
