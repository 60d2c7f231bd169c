#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k hook -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow/pytest-home}"
exec .venv/bin/python -m pytest "$@"
