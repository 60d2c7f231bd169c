#!/usr/bin/env bash
# Build the documentation (docs/, Sphinx) into .airflow/docs-html; any warning fails the build.
# Installs the pinned `docs` extra (constraints.txt) into .venv first; re-running is cheap:
# the install is skipped while pyproject.toml and constraints.txt are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

scripts/bootstrap.sh

STAMP=".venv/.meti-docs-installed"
wanted="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$wanted" ]; then
    echo "Installing the pinned documentation tools into .venv ..."
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt -e ".[docs]"
    echo "$wanted" > "$STAMP"
fi

# autodoc imports the provider and so Airflow: keep Airflow's files under .airflow/.
export AIRFLOW_HOME="$PWD/.airflow/docs-home"
# A fresh build every time: an incremental one would not repeat the warnings of unchanged pages.
rm -rf .airflow/docs-html
.venv/bin/python -m sphinx -W --keep-going -b html docs .airflow/docs-html
echo "Documentation built in $(( $(date +%s) - started ))s: .airflow/docs-html/index.html"
