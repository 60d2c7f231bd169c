#!/usr/bin/env bash
# The demo: the example DAGs run against a local METI emulator, then a short summary.
# Everything it writes goes under .airflow/demo/ (logs in .airflow/demo/logs/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
