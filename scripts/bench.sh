#!/usr/bin/env bash
# The benchmarks (about 40 minutes on two cores); writes BENCHMARKS.md. --quick: a smoke run.
# Extra arguments go to `python -m benchmarks` (e.g. scripts/bench.sh --only per_call).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow/bench-home}"
export METI_BENCH_COMMAND="scripts/bench.sh${*:+ $*}"
exec .venv/bin/python -m benchmarks "$@"
