#!/usr/bin/env bash
# Create or update .venv with the pinned development set (constraints.txt) and this package.
# Re-running is cheap: the install is skipped while pyproject.toml and constraints.txt are
# unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${METI_VENV:-.venv}"
STAMP="$VENV/.meti-installed"

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV ..."
    "$PYTHON" -m venv "$VENV"
fi

wanted="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$wanted" ]; then
    echo "Installing pinned dependencies into $VENV (first run: about a minute) ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt -e ".[dev]"
    echo "$wanted" > "$STAMP"
fi
